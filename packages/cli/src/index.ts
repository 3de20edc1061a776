export { startStack, type Stack, type StackOptions } from './stack.ts';
export { attachAuth, prepareStackAuth, writeNatsAuth, type StackAuth } from './stack-auth.ts';
export { startNatsServer, findNatsServer, stopProcess, NATS_INSTALL_HELP, type StartedNats } from './nats-server.ts';
export { readContext, vmsimHome, type Context } from './context.ts';
export {
  INFRA_TARGETS,
  INFRA_ACTIONS,
  injectInfraFault,
  runInfraFault,
  type InfraFaultResult,
  type InfraStack,
  type InfraTarget,
  type ServiceSlot,
} from './infra-faults.ts';
export { killChild } from './launch.ts';
export { parseDuration } from './format.ts';
export type { CompareRow } from './compare-types.ts';
export type { IsolationRow } from './isolation.ts';
export type { PolicyComparison } from './policies.ts';
export type { Report } from './report.ts';
