// The reference y-websocket server (@y/websocket-server) for the yjs_fanout benchmark, as its
// own bin (src/server.js) sets it up -- an http server answering 'okay', a `ws` server without
// its own port, every upgrade handed to setupWSConnection with the URL path as the room name --
// with its defaults (no persistence: YPERSISTENCE unset; gc on; no callback URL), but listening
// on 127.0.0.1 and the port given as the first argument.
//
//   node bench/peers/y-websocket-server.mjs PORT      (prints "ready PORT" once listening)
import http from 'node:http'
import WebSocket from 'ws'
import { setupWSConnection } from '@y/websocket-server/utils'

const port = Number.parseInt(process.argv[2] ?? '1234', 10)
delete process.env.YPERSISTENCE

const wss = new WebSocket.Server({ noServer: true })
wss.on('connection', setupWSConnection)

const server = http.createServer((_request, response) => {
  response.writeHead(200, { 'Content-Type': 'text/plain' })
  response.end('okay')
})
server.on('upgrade', (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
})
server.listen(port, '127.0.0.1', () => console.log(`ready ${port}`))

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0))
