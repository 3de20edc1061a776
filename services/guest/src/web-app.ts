import type { IngressReply, IngressRequest, Rng } from '@vmsim/shared';
import { ErrorCode, createRng, errorReply } from '@vmsim/shared';
import { DATA_BYTES, DATA_OFFSET, FILES_OFFSET, FILE_SLOT, digest, hex } from './disk-layout.ts';
import type { AppContext, ServerApp } from './app.ts';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

const KiB = 1024;

interface WebFile {
  path: string;
  size: number;
  /** Extra CPU to produce the response (templates, JSON); static files have none. */
  renderCycles: number;
}

/** The site every web VM serves; sizes are those of a typical small site's pages and assets. */
export const WEB_FILES: readonly WebFile[] = [
  { path: '/index.html', size: 12 * KiB, renderCycles: 0 },
  { path: '/about.html', size: 8 * KiB, renderCycles: 0 },
  { path: '/static/app.js', size: 96 * KiB, renderCycles: 0 },
  { path: '/static/style.css', size: 24 * KiB, renderCycles: 0 },
  { path: '/img/hero.jpg', size: 180 * KiB, renderCycles: 0 },
  { path: '/img/logo.png', size: 6 * KiB, renderCycles: 0 },
  // A dynamic page: reads its data file and renders JSON (≈1 ms of a 2.8 GHz core).
  { path: '/api/items', size: 16 * KiB, renderCycles: 2_800_000 },
];

/**
 * Request costs, of the order of nginx serving small files (≈ 50-100 µs of CPU per request
 * plus copying) and an application server rendering a page (≈ 1 ms).
 */
export const WEB_COSTS = {
  requestCycles: 150_000,
  cyclesPerByte: 1,
  getSyscalls: 12,
  postSyscalls: 10,
  postParseCycles: 400_000,
  postCyclesPerByte: 4,
  postRenderCycles: 2_000_000,
  notFoundCycles: 60_000,
  headerBytes: 320,
  maxBodyBytes: 64 * KiB,
} as const;

/** Deterministic content for a file, so every install of the site holds the same bytes. */
export function fileContent(file: WebFile): Uint8Array {
  const rng: Rng = createRng(`web-file:${file.path}`);
  const out = new Uint8Array(file.size);
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(rng.next() * 256);
  return out;
}

export type WebRequestIn = { op: 'GET' | 'POST'; path: string; bytes: number; body?: Uint8Array | undefined };

/** A web server: GET reads files from the virtual disk, POST stores bodies on it. */
export class WebApp implements ServerApp {
  readonly footprintMiB = 64;
  private readonly m: Machine;
  private readonly os: OsProfile;
  private readonly disk: number;
  private readonly files = new Map<string, { file: WebFile; offset: number }>();
  private uploadSlot = 0;
  private served = 0;

  constructor(ctx: Pick<AppContext, 'machine' | 'os' | 'disk'>) {
    this.m = ctx.machine;
    this.os = ctx.os;
    this.disk = ctx.disk;
    WEB_FILES.forEach((f, i) => this.files.set(f.path, { file: f, offset: FILES_OFFSET + i * FILE_SLOT }));
    this.files.set('/', this.files.get('/index.html')!);
  }

  /** Writes the site onto a fresh disk (first boot); a used disk already holds it. */
  async start(fresh: boolean): Promise<void> {
    if (!fresh) return;
    for (const [i, f] of WEB_FILES.entries())
      await this.m.write(this.disk, FILES_OFFSET + i * FILE_SLOT, fileContent(f));
  }

  async stop(): Promise<void> {}

  figures(): Record<string, number> {
    return { served: this.served, uploads: this.uploadSlot };
  }

  async handle(req: IngressRequest): Promise<IngressReply> {
    if (req.app !== 'web') return errorReply(ErrorCode.SCHEMA, `this VM runs a web server, not ${req.app}`);
    this.served++;
    return req.op === 'GET' ? this.get(req.path, this.disk) : this.post(req, this.disk);
  }

  private async get(path: string, disk: number): Promise<IngressReply> {
    const entry = this.files.get(path.split('?')[0]!);
    if (!entry) {
      await this.m.cpu(WEB_COSTS.notFoundCycles + 4 * this.os.syscallCycles);
      return { ok: true, status: 404, bytes: WEB_COSTS.headerBytes };
    }
    const { file, offset } = entry;
    await this.m.cpu(WEB_COSTS.requestCycles + WEB_COSTS.getSyscalls * this.os.syscallCycles);
    const content = await this.m.read(disk, offset, file.size);
    await this.m.cpu(file.renderCycles + file.size * WEB_COSTS.cyclesPerByte);
    return { ok: true, status: 200, bytes: file.size + WEB_COSTS.headerBytes, digest: hex(digest(content)) };
  }

  private async post(req: WebRequestIn, disk: number): Promise<IngressReply> {
    const body = req.body ?? new Uint8Array(0);
    if (body.length > WEB_COSTS.maxBodyBytes) {
      await this.m.cpu(WEB_COSTS.notFoundCycles);
      return errorReply(ErrorCode.OUT_OF_RANGE, `body of ${body.length} bytes exceeds ${WEB_COSTS.maxBodyBytes}`);
    }
    if (req.path !== '/api/items' && req.path !== '/upload') {
      await this.m.cpu(WEB_COSTS.notFoundCycles + 4 * this.os.syscallCycles);
      return { ok: true, status: 404, bytes: WEB_COSTS.headerBytes };
    }
    await this.m.cpu(
      WEB_COSTS.postParseCycles +
        body.length * WEB_COSTS.postCyclesPerByte +
        WEB_COSTS.postSyscalls * this.os.syscallCycles,
    );
    if (body.length > 0) {
      const slots = DATA_BYTES / WEB_COSTS.maxBodyBytes;
      const offset = DATA_OFFSET + (this.uploadSlot++ % slots) * WEB_COSTS.maxBodyBytes;
      await this.m.write(disk, offset, body);
    }
    if (req.path === '/api/items') await this.m.cpu(WEB_COSTS.postRenderCycles);
    return { ok: true, status: 201, bytes: WEB_COSTS.headerBytes + 64, digest: hex(digest(body)) };
  }
}
