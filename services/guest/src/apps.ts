import type { AppKind } from '@vmsim/shared';
import type { AppContext, ServerApp } from './app.ts';
import { DbApp } from './db-app.ts';
import { FileApp } from './file-app.ts';
import { GameApp } from './game-app.ts';
import { MailApp } from './mail-app.ts';
import { WebApp } from './web-app.ts';

/** The server application each app kind runs. */
export function createApp(kind: AppKind, ctx: AppContext): ServerApp {
  switch (kind) {
    case 'web':
      return new WebApp(ctx);
    case 'mail':
      return new MailApp(ctx);
    case 'db':
      return new DbApp(ctx);
    case 'file':
      return new FileApp(ctx);
    case 'game':
      return new GameApp(ctx);
  }
}
