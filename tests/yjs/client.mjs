// One real Yjs client for the tests: a Y.Doc synced by y-websocket's WebsocketProvider
// (unmodified, over the `ws` package), driven by JSON lines on stdin.
//
//   stdin:  {"id": 1, "op": "insert", "index": 0, "text": "é"}
//   stdout: {"id": 1, "result": ...}  or  {"id": 1, "error": "message"}   (one per command)
//           {"event": "status" | "sync" | "close" | "closed" | "connection_error" |
//                     "awareness" | "update" | "console" | "uncaught", ...}  (unsolicited)
//
// Timeouts are in seconds and text indexes in UTF-16 code units, as Yjs counts them.
// The process exits when stdin closes. Diagnostics go to stderr.
import { createInterface } from 'node:readline'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const doc = new Y.Doc()
let provider = null
let lastStatus = null
let watchUpdates = false

const write = (message) => process.stdout.write(JSON.stringify(message) + '\n')
const emit = (event, fields = {}) => write({ event, ...fields })
const hex = (bytes) => Buffer.from(bytes).toString('hex')
const text = (type) => doc.getText(type || 'content')

// y-websocket and y-protocols report some failures only on the console: a server update Yjs could
// not apply ("Caught error while handling a Yjs update"), an unknown message type, an auth denial.
// Pass them on as "console" events too, so that a test can see them.
for (const level of ['error', 'warn']) {
  const original = console[level]
  console[level] = (...args) => {
    original(...args)
    emit('console', { level, message: args.map((arg) => String(arg?.message ?? arg)).join(' ') })
  }
}
const log = (error) => process.stderr.write(`${error?.stack ?? error}\n`)

doc.on('update', (update, origin) => {
  // origin is the provider for updates that came over the websocket, null for local edits
  if (watchUpdates) emit('update', { local: origin !== provider, update: hex(update) })
})

function requireProvider () {
  if (provider === null) throw new Error('not connected: send connect first')
  return provider
}

function connect ({ url, room, params = {}, maxBackoffTime }) {
  if (provider !== null) throw new Error('already connected: destroy the provider first')
  const options = { params, WebSocketPolyfill: WebSocket, disableBc: true, connect: false }
  if (maxBackoffTime !== undefined) options.maxBackoffTime = maxBackoffTime
  const p = new WebsocketProvider(url, room, doc, options)
  p.on('status', ({ status }) => {
    lastStatus = status
    emit('status', { status })
  })
  p.on('sync', (synced) => emit('sync', { synced }))
  // event is null when the client closed the socket itself: disconnect(), destroy() or the
  // provider's watchdog (no message from the server for 30 s)
  p.on('connection-close', (event) => emit('close', event === null
    ? { code: null, reason: null, local: true }
    : { code: event.code, reason: event.reason, wasClean: event.wasClean, local: false }))
  // a close code the provider will not reconnect after (4400-4499 by default)
  p.on('closed', ({ code, reason }) => emit('closed', { code, reason }))
  p.on('connection-error', (event) => emit('connection_error', { message: event.message ?? null }))
  p.awareness.on('change', ({ added, updated, removed }) =>
    emit('awareness', { added, updated, removed }))
  provider = p
  p.connect() // after the listeners, so the first "connecting" status is reported too
  return { client_id: doc.clientID, url: p.url }
}

function waitSynced ({ timeout = 10 }) {
  const p = requireProvider()
  if (p.synced) return Promise.resolve(true)
  return new Promise((resolve, reject) => {
    const onSync = (synced) => {
      if (!synced) return
      clearTimeout(timer)
      p.off('sync', onSync)
      resolve(true)
    }
    const timer = setTimeout(() => {
      p.off('sync', onSync)
      reject(new Error(`not synced after ${timeout}s`))
    }, timeout * 1000)
    p.on('sync', onSync)
  })
}

// mulberry32: a small seeded PRNG, so that a failing random run can be replayed
function prng (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// UTF-16 offsets of every code point boundary of s, 0 and s.length included
function boundaries (s) {
  const offsets = [0]
  let offset = 0
  for (const char of s) {
    offset += char.length
    offsets.push(offset)
  }
  return offsets
}

const ALPHABET = ['a', 'b', 'é', '漢', '😀', ' ', '\n']
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// count random edits: 30% deletes of 1-3 code points when there is text, else inserts of 1-3
// characters from alphabet, always at code point boundaries. Between edits the event loop runs
// (setImmediate, or delay_ms), so remote updates interleave with local ones.
async function randomEdits ({ count, seed = 1, alphabet = ALPHABET, delay_ms: delayMs = 0, type }) {
  const random = prng(seed)
  const below = (n) => Math.floor(random() * n)
  const ytext = text(type)
  let inserts = 0
  let deletes = 0
  for (let i = 0; i < count; i++) {
    const offsets = boundaries(ytext.toString())
    const codePoints = offsets.length - 1
    if (codePoints > 0 && random() < 0.3) {
      const start = below(codePoints)
      const end = Math.min(codePoints, start + 1 + below(3))
      ytext.delete(offsets[start], offsets[end] - offsets[start])
      deletes++
    } else {
      let inserted = ''
      for (let n = 1 + below(3); n > 0; n--) inserted += alphabet[below(alphabet.length)]
      ytext.insert(offsets[below(offsets.length)], inserted)
      inserts++
    }
    await (delayMs > 0 ? sleep(delayMs) : new Promise((resolve) => setImmediate(resolve)))
  }
  return { inserts, deletes, length: ytext.length }
}

function awarenessStates () {
  const states = {}
  for (const [clientId, state] of requireProvider().awareness.getStates()) states[clientId] = state
  return { client_id: doc.clientID, states }
}

// Y.Text clamps indexes out of range silently; a test asking for one has a bug, so say so.
function checkRange (ytext, index, length = 0) {
  if (!Number.isInteger(index) || !Number.isInteger(length) || index < 0 || length < 0 ||
      index + length > ytext.length) {
    throw new RangeError(`index ${index} length ${length} outside a text of length ${ytext.length}`)
  }
}

const ops = {
  connect,
  wait_synced: waitSynced,
  insert: ({ index, text: inserted, type }) => {
    checkRange(text(type), index)
    text(type).insert(index, inserted)
  },
  delete: ({ index, length, type }) => {
    checkRange(text(type), index, length)
    text(type).delete(index, length)
  },
  text: () => ({ content: text('content').toString(), title: text('title').toString() }),
  random_edits: randomEdits,
  awareness_set: ({ field, value }) => {
    requireProvider().awareness.setLocalStateField(field, value)
  },
  // the whole local state; null announces that this client left
  awareness_state: ({ state }) => { requireProvider().awareness.setLocalState(state) },
  awareness_states: awarenessStates,
  info: () => ({
    client_id: doc.clientID,
    connected: provider?.wsconnected ?? false,
    synced: provider?.synced ?? false,
    status: lastStatus,
    should_connect: provider?.shouldConnect ?? false,
    url: provider?.url ?? null
  }),
  disconnect: () => { requireProvider().disconnect() },
  reconnect: () => { requireProvider().connect() },
  destroy: () => {
    requireProvider().destroy()
    provider = null
    lastStatus = null
  },
  // report every doc update (local and remote) as an "update" event with its bytes in hex
  watch_updates: ({ on = true }) => { watchUpdates = on },
  state_vector: () => hex(Y.encodeStateVector(doc)),
  encode_state: ({ vector }) =>
    hex(Y.encodeStateAsUpdate(doc, vector ? Buffer.from(vector, 'hex') : undefined)),
  // a local transaction with origin null: the provider sends it to the server like an edit
  apply_update: ({ update }) => { Y.applyUpdate(doc, Buffer.from(update, 'hex')) }
}

async function handle (line) {
  let id = null
  try {
    const command = JSON.parse(line)
    id = command.id ?? null
    const op = Object.hasOwn(ops, command.op) ? ops[command.op] : undefined
    if (op === undefined) throw new Error(`unknown op ${JSON.stringify(command.op)}`)
    const result = await op(command)
    write({ id, result: result ?? null })
  } catch (error) {
    log(error)
    write({ id, error: String(error?.message ?? error) })
  }
}

// An exception outside any command (say, in the provider's message handler) is reported instead of
// ending the process, so that a test can see it and still inspect the client.
process.on('uncaughtException', (error) => {
  log(error)
  emit('uncaught', { message: String(error?.message ?? error) })
})

const input = createInterface({ input: process.stdin, crlfDelay: Infinity })
input.on('line', (line) => { if (line.trim()) handle(line) })
input.on('close', async () => {
  // destroy() sends "this client left" (awareness) and starts the closing handshake; let both
  // reach the server (for up to a second) rather than cut the connection at exit
  const ws = provider?.ws
  provider?.destroy()
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    await new Promise((resolve) => {
      ws.once('close', resolve)
      setTimeout(resolve, 1000)
    })
  }
  process.exit(0)
})
