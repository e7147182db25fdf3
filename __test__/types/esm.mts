// ESM consumers import the named class.
import { LocalWorkerAdapter } from '../../index.js'
import type { WorkerAdapter } from '../../index.js'

const adapter: WorkerAdapter = new LocalWorkerAdapter()
void adapter
