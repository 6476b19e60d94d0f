/**
 * What the long runs (`npm run chaos`, `npm run soak`) share, through one door: the frame of
 * their `main`, their edge on a temp dir, readers of `/proc` and of Prometheus endpoints, small statistics, and report files.
 */
export { RUN_TENANT, startRunEdge } from './edge.js';
export type { RunEdge, RunEdgeOptions } from './edge.js';
export { gitDescribe } from './git.js';
export { parseGoHeap, readNatsHeap } from './nats-heap.js';
export type { GoMemStats, NatsHeap } from './nats-heap.js';
export { loadAverage, openFds, parsePrometheus, rssKiB, scrape, threads } from './proc.js';
export type { PromSample } from './proc.js';
export { runLongRun } from './main-frame.js';
export type { LongRun, ReadArgs, RunContext } from './main-frame.js';
export { markdownTable, writeReport } from './report.js';
export { linearFit, percentile, round } from './stats.js';
export type { LinearFit } from './stats.js';
