import { z } from 'zod';

/** The error half of every reply on the bus: a stable code and a sentence for people. */
export const ErrorReply = z.object({
  ok: z.literal(false),
  code: z.string().max(64),
  message: z.string().max(4096),
});
export type ErrorReply = z.infer<typeof ErrorReply>;

/** Clipped to what ErrorReply allows: a message may quote bad input (a name from a subject). */
export function errorReply(code: string, message: string): ErrorReply {
  return {
    ok: false,
    code: code.slice(0, 64),
    message: message.length > 4096 ? `${message.slice(0, 4093)}...` : message,
  };
}

export function replyOf<T extends z.ZodType>(ok: T) {
  return z.union([ok, ErrorReply]);
}

/** A request that carries no fields (queries such as inventory or list). */
export const EmptyRequest = z.object({}).passthrough();
