'use strict'
// Placeholder: the JavaScript implementation is being written.
class LocalWorkerAdapter {
  constructor() { throw new Error('the JavaScript implementation is not written yet') }
}
module.exports = { LocalWorkerAdapter }
