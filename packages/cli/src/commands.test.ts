import { describe, expect, it } from 'vitest';
import type { VmInfo, VolumeInfo } from '@vmsim/shared';
import { VM_HEADERS, vmDetails, vmRow } from './commands.ts';

const MiB = 2 ** 20;

function vm(volume: Partial<VolumeInfo> | null, state = 'running', reason = 'booted'): VmInfo {
  const io = {
    reads: 30,
    writes: 10,
    flushes: 2,
    bytesRead: 0,
    bytesWritten: 0,
    latencyMsSum: 100,
    latencyMsMax: 9.5,
    zeroReads: 4,
    copiedBytes: 3 * MiB,
    zeroedBytes: MiB,
    poolFullStalls: 1,
  };
  return {
    name: 'db1',
    uuid: 'u',
    definition: {
      name: 'db1',
      app: 'db',
      os: 'linux',
      vcpus: 1,
      memoryMiB: 512,
      diskGiB: 1,
      shares: 100,
      watchdog: { action: 'reset' },
    },
    state,
    reason,
    pid: 7,
    restarts: 0,
    bootMs: 100,
    lastHeartbeatAgoMs: 10,
    guestLagMs: 1,
    disks: volume
      ? [
          {
            index: 0,
            sizeBytes: 2 ** 30,
            extents: Array.from({ length: 9 }, (_, i) => ({
              vOffset: i * MiB,
              disk: 'sdb',
              pOffset: i * MiB,
              length: MiB,
            })),
            volume: {
              id: 'db1',
              pool: 'p',
              provisioning: 'thin',
              virtualBytes: 2 ** 30,
              allocatedBytes: 12 * MiB,
              sharedBytes: 4 * MiB,
              template: false,
              origin: 'golden',
              snapshots: [{ name: 's1', bytes: MiB }],
              attachedTo: 'db1',
              io,
              ...volume,
            },
          },
        ]
      : [],
    hypercalls: { total: 0, rejected: 0, byOp: {} },
    net: { requests: 0, replies: 0, dropped: 0, rxBytes: 0, txBytes: 0, waitMs: 0 },
    memory: {
      sizeMiB: 512,
      limitMiB: 512,
      usedMiB: 0,
      residentMiB: 0,
      swappedMiB: 0,
      balloonMiB: 0,
      majorFaults: 0,
      oomKills: 0,
    },
    app: {},
    stress: null,
    fault: null,
    health: 'ok',
    badMessages: 0,
  } as unknown as VmInfo;
}

describe('VM disk figures in status and vm info', () => {
  it('status shows allocated of virtual, thin or thick, and FULL for a VM a full pool paused', () => {
    const col = VM_HEADERS.indexOf('DISK');
    expect(vmRow(vm({}))[col]).toBe('12M/1.00G thin');
    expect(vmRow(vm({}, 'paused', 'I/O error: pool p is full'))[col]).toBe('12M/1.00G thin FULL');
    expect(vmRow(vm({ provisioning: 'thick', allocatedBytes: 2 ** 30 }))[col]).toBe('1.00G/1.00G thick');
    expect(vmRow(vm(null))[col]).toBe('-');
  });

  it('vm info names the volume, its origin and snapshots, I/O with mean latency, and a short disk map', () => {
    const text = vmDetails(vm({}));
    expect(text).toContain(
      'volume db1 in pool p, thin, clone of golden: 12M allocated + 4M shared of 1.00G; 1 snapshots (s1)',
    );
    // 100 ms over 40 reads and writes.
    expect(text).toContain('30 reads (4 of unwritten chunks), 10 writes, 2 flushes; latency mean 2.50 ms, max 9.50 ms');
    expect(text).toContain('copied up 3M, zero-filled 1M; 1 pool-full stalls');
    expect(text).toContain('… (9 extents)');
  });
});
