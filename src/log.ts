/** pino logger: JSON lines, or pino-pretty when stdout is a terminal a human is reading. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  return pino({
    name: 'pgbell',
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' } } } : {}),
  });
}
