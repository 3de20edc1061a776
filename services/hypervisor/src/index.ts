export { Hypervisor, HYPERVISOR_TYPES, type HypervisorType, type HypervisorConfig } from './hypervisor.ts';
export { ResourceScheduler, POLICIES, type Policy, type Job } from './scheduler.ts';
export { nextState, canApply, ACTIVE_STATES, VM_COMMANDS, type VmCommand } from './vm-state.ts';
export { ExtentAllocator } from './block-map.ts';
export { Volumes, type VolumeIo } from './volumes.ts';
export { ConnectionTable } from './connections.ts';
export {
  admitMemory,
  committableMiB,
  admitCpuReservation,
  checkReservation,
  hostCpuPct,
  reservableCpuPct,
} from './admission.ts';
export { NKey, NKEY_ROLES, type NKeyRole } from './nkey.ts';
export {
  AUTH_FILES,
  GuestCredentials,
  NatsSigner,
  SERVICE_ROLES,
  createNatsAuthority,
  formatCreds,
  mintUser,
  natsServerAuthConfig,
  readSigner,
  writeAuthDir,
  writeServiceCreds,
  writeSecret,
  type MintedUser,
  type NatsAuthority,
} from './nats-auth.ts';
