/** pino logger: JSON lines, or pino-pretty's human lines when a person is reading. */
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * `pretty` defaults to whether stdout is a terminal; LOG_FORMAT (passed by the caller as
 * `format`) overrides it either way.
 */
export function createLogger(level: string, opts: { pretty?: boolean; format?: 'pretty' | 'json' | undefined } = {}): Logger {
  const pretty = opts.format !== undefined ? opts.format === 'pretty' : (opts.pretty ?? process.stdout.isTTY === true);
  return pino({
    name: 'pgbell',
    level,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', singleLine: true } } } : {}),
  });
}
