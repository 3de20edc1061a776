export {
  Arrival,
  DEFAULT_PATHS,
  POST_PATHS,
  HEADER_BYTES,
  POST_BODY_BYTES,
  OpenLoop,
  makeRequest,
  type TargetSpec,
  type Send,
  type OpenLoopOptions,
  type StopOptions,
  type LatencySummary,
  type TargetSummary,
  type Summary,
  type Progress,
  type ProgressTarget,
} from './load.ts';
export { createBusSender, classifyRequestError, type BusSenderOptions } from './bus-sender.ts';
export { ClientGenEnv, TargetSpecSchema } from './config.ts';
