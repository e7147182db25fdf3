// Stands in for a Helios chunk renderer: renders `frames` frames, printing progress,
// holding `memMiB` of touched memory and burning some CPU per frame.
//   node fake-renderer.mjs <chunk> <frames> <msPerFrame> <memMiB>
const [chunk, frames, msPerFrame, memMiB] = process.argv.slice(2).map(Number)
const frameBuffer = Buffer.alloc(memMiB * 1024 * 1024, 1)
for (let frame = 1; frame <= frames; frame++) {
  const until = performance.now() + msPerFrame
  let x = 0
  while (performance.now() < until) x += Math.sqrt(x + frame) // "encode" the frame
  process.stdout.write(`chunk ${chunk}: frame ${frame}/${frames}\n`)
}
process.stderr.write(`chunk ${chunk}: done (${frameBuffer.length >> 20} MiB frame buffer)\n`)
