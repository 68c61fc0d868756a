// Starts kinesalite (in memory) on 127.0.0.1 only: its own CLI binds every interface.
// Usage: node kinesalite.js PORT   (with NODE_PATH pointing at bench/.peers/node/node_modules)
// Stops on SIGTERM or SIGINT. Prints "kinesalite listening on 127.0.0.1:PORT" once it listens.
'use strict'
const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node kinesalite.js PORT')
  process.exit(2)
}
const kinesalite = require('kinesalite')
// No `path` option: the store is memdown, so nothing reaches a disk (durability: none).
// Stream state changes take 50 ms instead of the default 500 ms. The account's shard limit is
// raised from kinesalite's default of 10 (AWS' old default), which a benchmark's six 4-shard
// streams exceed; Riffle has no such limit.
const server = kinesalite({ createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 1000 })
server.listen(port, '127.0.0.1', (error) => {
  if (error) {
    console.error(`kinesalite: ${error}`)
    process.exit(1)
  }
  console.log(`kinesalite listening on 127.0.0.1:${port}`)
})
server.on('error', (error) => {
  console.error(`kinesalite: ${error}`)
  process.exit(1)
})
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)))
}
