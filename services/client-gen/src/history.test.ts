import { describe, expect, it } from 'vitest';
import { GOOD, History, UNCHECKED, type Verdict } from './history.ts';

/** The problem a check found, or undefined. */
const wrong = (v: Verdict): string | undefined => (v.checked ? v.problem : undefined);

describe('History', () => {
  it('cannot check a key before a write of it was acked', () => {
    const h = new History();
    expect(h.read('k')).toBeUndefined();
    h.write('k', 'aa');
    expect(h.read('k')).toBeUndefined();
    expect(h.known('k')).toBe(false);
  });

  it('checks a read against the acked value', () => {
    const h = new History();
    const w = h.write('k', 'aa');
    h.acked('k', w);
    expect(h.check('k', h.read('k')!, 'aa')).toEqual(GOOD);
    const bad = h.check('k', h.read('k')!, 'bb');
    expect(bad.checked && bad.problem).toMatch(/k has digest bb, expected aa/);
    const lost = h.check('k', h.read('k')!, undefined);
    expect(lost.checked && lost.problem).toMatch(/not found/);
  });

  it('accepts any value a write overlapping the read may have left', () => {
    const h = new History();
    h.acked('k', h.write('k', 'v1'));
    const w2 = h.write('k', 'v2');
    const reads = [h.read('k')!, h.read('k')!, h.read('k')!, h.read('k')!];
    // Sent while the reads are out: they may see it.
    h.write('k', 'v3');
    expect(h.check('k', reads[0]!, 'v1')).toEqual(GOOD);
    expect(h.check('k', reads[1]!, 'v2')).toEqual(GOOD);
    expect(h.check('k', reads[2]!, 'v3')).toEqual(GOOD);
    expect(wrong(h.check('k', reads[3]!, 'v4'))).toMatch(/expected v1 or v2 or v3/);
    // Once v2 is acked, v1 (over before v2 was sent) can no longer be read; v3 still can.
    h.acked('k', w2);
    expect(wrong(h.check('k', h.read('k')!, 'v1'))).toMatch(/expected v2 or v3/);
    expect(h.check('k', h.read('k')!, 'v2')).toEqual(GOOD);
    expect(h.check('k', h.read('k')!, 'v3')).toEqual(GOOD);
  });

  it('keeps a write whose reply never came: it may still land', () => {
    const h = new History();
    h.acked('k', h.write('k', 'v1'));
    h.write('k', 'lost'); // timed out, no reply
    h.acked('k', h.write('k', 'v3'));
    expect(h.check('k', h.read('k')!, 'lost')).toEqual(GOOD);
    expect(h.check('k', h.read('k')!, 'v3')).toEqual(GOOD);
    expect(wrong(h.check('k', h.read('k')!, 'v1'))).toBeTruthy();
  });

  it('drops a refused write, keeps one that failed after it may have been applied', () => {
    const h = new History();
    h.acked('k', h.write('k', 'v1'));
    const refused = h.write('k', 'v2');
    const r = h.read('k')!;
    h.failed('k', refused, false);
    expect(wrong(h.check('k', r, 'v2'))).toBeTruthy();
    const maybe = h.write('k', 'v3');
    h.failed('k', maybe, true);
    expect(h.check('k', h.read('k')!, 'v3')).toEqual(GOOD);
    expect(h.check('k', h.read('k')!, 'v1')).toEqual(GOOD);
  });

  it('does not judge when a candidate value is unknown, learns it from the ack', () => {
    const h = new History();
    const w = h.write('f', undefined);
    h.acked('f', w);
    expect(h.check('f', h.read('f')!, 'x')).toEqual(UNCHECKED);
    const w2 = h.write('f', undefined);
    h.acked('f', w2, 'd2');
    expect(h.check('f', h.read('f')!, 'd2')).toEqual(GOOD);
    expect(wrong(h.check('f', h.read('f')!, 'x'))).toMatch(/expected d2/);
  });
});
