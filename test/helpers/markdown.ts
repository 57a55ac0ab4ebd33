/** The shell blocks of the project's Markdown, for tests that parse or run them as written. */
import { readFileSync } from 'node:fs';

export interface ShellBlock {
  file: string;
  /** The heading the block sits under ('' before the first). */
  heading: string;
  /** 1-based line of the opening fence. */
  line: number;
  text: string;
}

/** Every ```sh (or bash, shell) block of `file`. */
export function shellBlocks(file: string): ShellBlock[] {
  const blocks: ShellBlock[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const fence = lines[i]!.match(/^```(\w*)\s*$/);
    if (!fence) {
      const h = lines[i]!.match(/^#{1,6} (.+)$/);
      if (h) heading = h[1]!.trim();
      continue;
    }
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end === -1) break;
    if (['sh', 'bash', 'shell'].includes(fence[1]!)) blocks.push({ file, heading, line: i + 1, text: lines.slice(i + 1, end).join('\n') + '\n' });
    i = end;
  }
  return blocks;
}
