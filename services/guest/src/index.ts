export { OS_PROFILES, type OsProfile, type BootStage } from './os-profiles.ts';
export { WebApp, WEB_FILES, WEB_COSTS, fileContent } from './web-app.ts';
export { HypercallClient, type Machine } from './hypercalls.ts';
export { digest, hex } from './disk-layout.ts';
export type { ServerApp, AppContext } from './app.ts';
export { createApp } from './apps.ts';
