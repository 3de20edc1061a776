import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket.ts';

describe('TokenBucket', () => {
  it('starts full, goes into debt by a large request and refills at its rate', () => {
    const b = new TokenBucket(2, 10, 0); // 2 tokens per ms, burst 10
    expect(b.ready(0)).toBe(true);
    b.take(16, 0);
    expect(b.tokens(0)).toBe(-6);
    expect(b.ready(1)).toBe(false);
    expect(b.readyAt(1)).toBeCloseTo(3, 9);
    expect(b.ready(3)).toBe(true);
    expect(b.tokens(100)).toBe(10); // never above the burst
  });

  it('passes a long-run rate equal to its fill rate', () => {
    const b = new TokenBucket(0.5, 4, 0);
    let now = 0;
    let taken = 0;
    while (now < 10_000) {
      now = b.readyAt(now);
      b.take(1, now);
      taken++;
    }
    expect(taken / 10_000).toBeCloseTo(0.5, 2);
  });

  it('forgets debt below its floor', () => {
    const b = new TokenBucket(1, 4, 0, -4);
    b.take(100, 0);
    expect(b.tokens(0)).toBe(-4);
    expect(b.readyAt(0)).toBeCloseTo(4, 9);
  });

  it('refuses nonsense rates', () => {
    expect(() => new TokenBucket(0, 1, 0)).toThrow(/rate/);
    expect(() => new TokenBucket(1, 0, 0)).toThrow(/burst/);
    expect(() => new TokenBucket(1, 1, 0, 1)).toThrow(/floor/);
  });
});
