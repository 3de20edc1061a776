/**
 * How a guest lays out its virtual disk (a tiny file system of our own):
 *   [0, 4 KiB)          superblock: magic and version, written last at install
 *   [1 MiB, 16 MiB)     application files, one 1 MiB slot each
 *   [16 MiB, 32 MiB)    application data (uploads ring)
 *   [32 MiB, 128 MiB)   the OS image that boot stages read
 *   [128 MiB, end)      the application's own data area (db log, mail spool, files)
 *   [end - 64 MiB, end) on disks of 512 MiB or more: scratch for the disk stressor, which
 *                       the application's data area stops short of
 */
export const MiB = 1024 * 1024;
export const SUPERBLOCK_OFFSET = 0;
export const FILES_OFFSET = 1 * MiB;
export const FILE_SLOT = 1 * MiB;
export const MAX_FILES = 15;
export const DATA_OFFSET = 16 * MiB;
export const DATA_BYTES = 16 * MiB;
export const OS_IMAGE_OFFSET = 32 * MiB;
export const OS_IMAGE_BYTES = 96 * MiB;
export const MIN_DISK_BYTES = 128 * MiB;

const MAGIC = 'VMSIMFS1';

export function superblock(app: string): Uint8Array {
  const block = new Uint8Array(4096);
  block.set(new TextEncoder().encode(`${MAGIC}\n${app}\n`));
  return block;
}

export function isFormatted(block: Uint8Array, app: string): boolean {
  return new TextDecoder().decode(block.subarray(0, MAGIC.length + app.length + 2)) === `${MAGIC}\n${app}\n`;
}

/** FNV-1a, 32 bits: a cheap digest so clients can check that content came back intact. */
export function digest(data: Uint8Array, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    h ^= data[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** Where applications that keep data (db, mail, file, game saves) start their own area. */
export const APP_DATA_OFFSET = 128 * MiB;

/**
 * The disk stressor writes only here, so stressing a VM never destroys its application's
 * data. Small disks have none (the stressor then only reads): carving 64 MiB out of a
 * 128-256 MiB disk would leave the applications too little.
 */
export const SCRATCH_BYTES = 64 * MiB;
export const SCRATCH_MIN_DISK_BYTES = 512 * MiB;

export function scratchArea(diskBytes: number): { offset: number; bytes: number } | undefined {
  if (diskBytes < SCRATCH_MIN_DISK_BYTES) return undefined;
  const end = Math.floor(diskBytes / MiB) * MiB;
  return { offset: end - SCRATCH_BYTES, bytes: SCRATCH_BYTES };
}

/** Where an application's own data area ends: the end of the disk, or the scratch area's start. */
export function appDataEnd(diskBytes: number): number {
  return scratchArea(diskBytes)?.offset ?? diskBytes;
}
