export { Hardware } from './hardware.ts';
export { HostAgent } from './agent.ts';
export { BlockStore } from './devices/block-store.ts';
export { CpuPackage } from './devices/cpu.ts';
export { DiskTiming } from './devices/disk-timing.ts';
export { NicLink } from './devices/nic.ts';
export { Ram } from './devices/ram.ts';
export { loadProfile, profilePath, PROFILE_NAMES } from './profiles.ts';
