// One serving thread of the per-CPU floor (scripts/bench-floor): bound to its CPU, it reads and
// answers its own clone of the /dev/fuse connection until the connection ends.
import { workerData } from 'node:worker_threads';
import { sys } from '../../dist/sys/syscalls.js';
import { FloorServer, bareLoop, type FloorWorkerData } from './floor.js';

const { fd, cpu } = workerData as FloorWorkerData;
sys.pinThread(cpu);
const server = new FloorServer();
server.negotiated = true; // INIT was answered on the first channel
bareLoop(fd, server);
