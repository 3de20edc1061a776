export { startStack, type Stack, type StackOptions } from './stack.ts';
export { startNatsServer, findNatsServer, stopProcess, NATS_INSTALL_HELP, type StartedNats } from './nats-server.ts';
export { readContext, vmsimHome, type Context } from './context.ts';
export { parseDuration } from './format.ts';
export type { CompareRow } from './compare-types.ts';
export type { IsolationRow } from './isolation.ts';
export type { PolicyComparison } from './policies.ts';
export type { Report } from './report.ts';
