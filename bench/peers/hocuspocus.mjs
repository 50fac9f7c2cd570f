// Hocuspocus (@hocuspocus/server) for the yjs_fanout benchmark: a bare `Server` with its defaults
// (no extensions, so no persistence; every connection authenticated; timeout 60 s; debounce
// 2 s; flushDelay 0, i.e. updates that arrive in one event-loop turn go out merged), listening
// on 127.0.0.1 and the port given as the first argument. `quiet` only silences the start banner.
//
//   node bench/peers/hocuspocus.mjs PORT      (prints "ready PORT" once listening)
import { Server } from '@hocuspocus/server'

const port = Number.parseInt(process.argv[2] ?? '1234', 10)
const server = new Server({ port, address: '127.0.0.1', quiet: true })
await server.listen()
console.log(`ready ${port}`)
