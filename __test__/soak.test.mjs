// A small soak in the suite; `node --expose-gc scripts/soak.mjs 10000` runs the full size.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { soak } from '../scripts/soak.mjs'
import { implementation } from './helpers.mjs'

test('1,200 mixed jobs leave no descriptors, no zombies, and RSS within 10 MB', async () => {
  const report = await soak(1200, 16)
  const kinds = Object.keys(report.outcomes)
  // Nothing of any job is left below us: no supervisor, no daemon. (Under the JS implementation's
  // process-group containment the setsid daemons escape: they go to init, out of this count.)
  assert.deepEqual(report.left, [])
  if (implementation === 'native') assert.equal(report.after.forkServerRssKb, report.before.forkServerRssKb, 'the fork server does not grow')
  for (const expected of ['exit 0', 'exit 1', 'ETIMEDOUT', 'ABORT_ERR', 'ENOENT']) {
    assert.ok(kinds.includes(expected), `no ${expected} among ${kinds}`)
  }
  assert.equal(report.after.fds, report.before.fds)
  assert.deepEqual(report.zombies, [])
  assert.ok(report.after.rssKb - report.before.rssKb < 10 * 1024, JSON.stringify(report))
})
