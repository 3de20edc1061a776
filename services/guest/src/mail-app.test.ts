import { describe, expect, it } from 'vitest';
import { ErrorCode, VmsimError, type IngressReply } from '@vmsim/shared';
import type { AppContext } from './app.ts';
import { MiB, digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import { MAIL_COSTS, MailApp, SPOOL_RECORDS_OFFSET } from './mail-app.ts';
import { OS_PROFILES } from './os-profiles.ts';
import { PowerPlug, appContext, testBytes } from './testing/app-harness.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const DISK = 256 * MiB;
const bsd = OS_PROFILES.bsd;

const ctx = (machine: Machine, diskBytes = DISK): AppContext => appContext(machine, bsd, diskBytes);

async function freshMail(diskBytes = DISK): Promise<{ fm: FakeMachine; plug: PowerPlug; mail: MailApp }> {
  const fm = new FakeMachine(diskBytes);
  const plug = new PowerPlug(fm);
  const mail = new MailApp(ctx(plug, diskBytes));
  await mail.start(true);
  return { fm, plug, mail };
}

async function recovered(fm: FakeMachine, diskBytes = DISK): Promise<MailApp> {
  const mail = new MailApp(ctx(fm, diskBytes));
  await mail.start(false);
  return mail;
}

const bytes = testBytes;

const submit = (mail: MailApp, mailbox: string, body: Uint8Array): Promise<IngressReply> =>
  mail.handle({ app: 'mail', op: 'SUBMIT', mailbox, body, bytes: body.length + 300 });
const fetch = (mail: MailApp, mailbox: string, id: number): Promise<IngressReply> =>
  mail.handle({ app: 'mail', op: 'FETCH', mailbox, id, bytes: 60 });
const list = (mail: MailApp, mailbox: string): Promise<IngressReply> =>
  mail.handle({ app: 'mail', op: 'LIST', mailbox, bytes: 40 });

async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

/** Switches the VM off: calls in flight land (one microtask), then unflushed writes are lost. */
async function powerCut(plug: PowerPlug, fm: FakeMachine): Promise<void> {
  plug.on = false;
  await ticks(3);
  fm.powerCut();
}

function ok(r: IngressReply): Extract<IngressReply, { ok: true }> {
  if (!r.ok) throw new Error(`expected a success, got ${r.code}: ${r.message}`);
  return r;
}

/** Byte equality without vitest's element-by-element deep comparison (slow on large bodies). */
function sameBytes(actual: Uint8Array | undefined, expected: Uint8Array): boolean {
  return actual !== undefined && Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected);
}

function idOf(r: IngressReply): number {
  return ok(r).meta!['id'] as number;
}

describe('MailApp', () => {
  it('round-trips real bytes, lists mailboxes and answers 404 for unknown ids', async () => {
    const { mail } = await freshMail();
    const a = bytes('a', 5000);
    const b = bytes('b', 256 * 1024);
    const c = bytes('c', 0);
    const ra = ok(await submit(mail, 'alice', a));
    expect(ra).toMatchObject({ status: 250, digest: hex(digest(a)), meta: { id: 1 } });
    const idB = idOf(await submit(mail, 'bob', b));
    const idC = idOf(await submit(mail, 'alice', c));
    expect([idB, idC]).toEqual([2, 3]);
    const fa = ok(await fetch(mail, 'alice', 1));
    expect(fa).toMatchObject({ status: 200, digest: hex(digest(a)) });
    expect(fa.data).toEqual(a);
    expect(ok(await fetch(mail, 'bob', idB)).data).toEqual(b);
    expect(ok(await fetch(mail, 'alice', idC)).data).toEqual(c);
    expect(ok(await list(mail, 'alice')).meta).toEqual({ count: 2 });
    expect(ok(await list(mail, 'nobody')).meta).toEqual({ count: 0 });
    expect(await fetch(mail, 'alice', 99)).toMatchObject({ ok: true, status: 404 });
    // Another mailbox's message is not yours.
    expect(await fetch(mail, 'alice', idB)).toMatchObject({ ok: true, status: 404 });
    expect(mail.figures()).toMatchObject({ messages: 3, submits: 3, fetches: 5 });
    expect(mail.figures().spoolBytes % 4096).toBe(0);
  });

  it('charges the SMTP dialogue with its syscalls and flushes the spool before answering 250', async () => {
    const { fm, mail } = await freshMail();
    const [cycles, flushes] = [fm.cpuCycles, fm.flushes];
    await submit(mail, 'alice', bytes('m', 1000));
    expect(fm.cpuCycles - cycles).toBe(
      MAIL_COSTS.submitCycles + MAIL_COSTS.submitSyscalls * bsd.syscallCycles + 1000 * MAIL_COSTS.submitCyclesPerByte,
    );
    expect(fm.flushes - flushes).toBe(1);
    fm.powerCut();
    expect(ok(await fetch(await recovered(fm), 'alice', 1)).data).toEqual(bytes('m', 1000));
  });

  it('refuses requests for another app kind and a FETCH without an id', async () => {
    const { mail } = await freshMail();
    expect(await mail.handle({ app: 'db', op: 'GET', key: 'k', bytes: 10 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
    expect(await mail.handle({ app: 'mail', op: 'FETCH', mailbox: 'a', bytes: 10 })).toMatchObject({
      ok: false,
      code: ErrorCode.SCHEMA,
    });
  });

  it('concurrent SUBMITs get their own spool space and share flushes', async () => {
    const { fm, mail } = await freshMail();
    const before = fm.flushes;
    const bodies = Array.from({ length: 40 }, (_, i) => bytes(`m${i}`, 1000 + 811 * i));
    const replies = await Promise.all(bodies.map((b, i) => submit(mail, `box${i % 3}`, b)));
    expect(fm.flushes - before).toBeLessThan(40);
    const ids = replies.map(idOf);
    expect(new Set(ids).size).toBe(40);
    for (const [i, b] of bodies.entries())
      expect(sameBytes(ok(await fetch(mail, `box${i % 3}`, ids[i]!)).data, b), `message ${i}`).toBe(true);
  });

  it('keeps every acknowledged message across a power cut, wherever the cut falls', async () => {
    let sawPartial = false;
    for (const cutAfter of [0, 1, 2, 3, 5, 8, 12, 20, 30, 45, 70, 100, 150, 400]) {
      const { fm, plug, mail } = await freshMail();
      const base = idOf(await submit(mail, 'base', bytes('base', 700)));
      const issued: { mailbox: string; body: Uint8Array }[] = [];
      const acked = new Map<number, { mailbox: string; body: Uint8Array }>();
      const burst = async (): Promise<void> => {
        for (let wave = 0; wave < 5; wave++) {
          for (let i = 0; i < 8; i++) {
            const msg = { mailbox: `box${i % 3}`, body: bytes(`w${wave}:${i}`, 100 + 1999 * i) };
            issued.push(msg);
            void submit(mail, msg.mailbox, msg.body).then((r) => {
              if (r.ok && r.status === 250) acked.set(idOf(r), msg);
            });
          }
          await ticks(6);
        }
      };
      void burst();
      await ticks(cutAfter);
      await powerCut(plug, fm);
      await ticks(50); // replies whose flush did complete may still arrive
      if (acked.size > 0 && acked.size < issued.length) sawPartial = true;

      const mail2 = await recovered(fm);
      expect(ok(await fetch(mail2, 'base', base)).data).toEqual(bytes('base', 700));
      for (const [id, msg] of acked)
        expect(sameBytes(ok(await fetch(mail2, msg.mailbox, id)).data, msg.body), `acked ${id}`).toBe(true);
      // Unacknowledged messages may or may not be there, but only whole and as submitted.
      const messages = mail2.figures().messages;
      const issuedDigests = new Set(issued.map((m) => hex(digest(m.body))));
      let counted = 1;
      for (const box of ['box0', 'box1', 'box2']) counted += ok(await list(mail2, box)).meta!['count'] as number;
      expect(counted).toBe(messages);
      for (let id = 2; id <= messages; id++) {
        const found = await Promise.all(['box0', 'box1', 'box2'].map((box) => fetch(mail2, box, id)));
        const hits = found.filter((r) => ok(r).status === 200);
        expect(hits).toHaveLength(1);
        expect(issuedDigests.has(hex(digest(ok(hits[0]!).data!)))).toBe(true);
      }
      // The spool goes on from where recovery stopped.
      const next = idOf(await submit(mail2, 'base', bytes('next', 10)));
      expect(next).toBe(messages + 1);
      expect(ok(await fetch(await recovered(fm), 'base', next)).data).toEqual(bytes('next', 10));
    }
    expect(sawPartial).toBe(true);
  });

  it('ignores a torn record at the spool tail on recovery', async () => {
    const { fm, mail } = await freshMail();
    for (let i = 0; i < 5; i++) await submit(mail, 'alice', bytes(`m${i}`, 9000));
    const goodBytes = mail.figures().spoolBytes;
    await submit(mail, 'alice', bytes('torn', 20_000));
    const size = mail.figures().spoolBytes - goodBytes;
    // Only the first half of the last message made it to the platters.
    await fm.write(0, SPOOL_RECORDS_OFFSET + goodBytes + size / 2, new Uint8Array(size / 2));
    await fm.flush(0);
    const mail2 = await recovered(fm);
    expect(mail2.figures()).toMatchObject({ messages: 5, spoolBytes: goodBytes });
    expect(await fetch(mail2, 'alice', 6)).toMatchObject({ ok: true, status: 404 });
    for (let i = 0; i < 5; i++) expect(ok(await fetch(mail2, 'alice', i + 1)).data).toEqual(bytes(`m${i}`, 9000));
    expect(idOf(await submit(mail2, 'alice', bytes('again', 30)))).toBe(6);
    expect(ok(await fetch(await recovered(fm), 'alice', 6)).data).toEqual(bytes('again', 30));
  });

  it('ignores garbage after the tail and messages of an earlier install', async () => {
    const { fm, mail } = await freshMail();
    await submit(mail, 'alice', bytes('a', 10));
    await fm.write(0, SPOOL_RECORDS_OFFSET + mail.figures().spoolBytes, bytes('junk', 8192));
    await fm.flush(0);
    expect((await recovered(fm)).figures().messages).toBe(1);
    await new MailApp(ctx(fm)).start(true);
    expect((await recovered(fm)).figures()).toMatchObject({ messages: 0, spoolBytes: 0 });
  });

  it('detects a corrupt message on FETCH', async () => {
    const { fm, mail } = await freshMail();
    await submit(mail, 'alice', bytes('a', 100));
    await fm.write(0, SPOOL_RECORDS_OFFSET + 24 + 5 + 10, new Uint8Array([1, 2, 3]));
    expect(await fetch(mail, 'alice', 1)).toMatchObject({ ok: false, code: ErrorCode.IO });
  });

  it('answers NO_SPACE once the spool fills the data area, keeping what it stored', async () => {
    const disk = 129 * MiB;
    const { fm, mail } = await freshMail(disk);
    const replies: IngressReply[] = [];
    for (let i = 0; i < 5; i++) replies.push(await submit(mail, 'alice', bytes(`big${i}`, 256 * 1024)));
    expect(replies.slice(0, 3).every((r) => r.ok && r.status === 250)).toBe(true);
    expect(replies[3]).toMatchObject({ ok: false, code: ErrorCode.NO_SPACE });
    // A small message still fits in what is left.
    expect(ok(await submit(mail, 'alice', bytes('small', 100))).status).toBe(250);
    const mail2 = await recovered(fm, disk);
    expect(mail2.figures().messages).toBe(4);
    expect(ok(await fetch(mail2, 'alice', 3)).data).toEqual(bytes('big2', 256 * 1024));
  });

  it('refuses mail after a failed spool write instead of leaving a hole', async () => {
    const { fm, mail } = await freshMail();
    await submit(mail, 'alice', bytes('a', 10));
    fm.failNext = new VmsimError(ErrorCode.IO, 'disk error');
    expect(await submit(mail, 'alice', bytes('b', 10))).toMatchObject({ ok: false, code: ErrorCode.IO });
    expect(await submit(mail, 'alice', bytes('c', 10))).toMatchObject({ ok: false, code: ErrorCode.IO });
    expect(ok(await fetch(mail, 'alice', 1)).status).toBe(200);
    await mail.stop();
  });
});
