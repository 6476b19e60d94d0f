/**
 * `vigil dlq ...`: list, show and replay dead letters through the protocol's dead-letter admin,
 * rendered for a terminal or as JSON.
 */
import {
  DEFAULT_DEAD_LETTER_LIST_LIMIT,
  type DeadLetterAdmin,
  type DeadLetterDetail,
  type DeadLetterSummary,
} from '../../protocol/index.js';
import { CliError } from './edge-target.js';

/** Where command output goes (stdout in the CLI, a buffer in tests). */
export interface Output {
  write(text: string): void;
}

/** Options of {@link dlqList}. */
export interface DlqListOptions {
  model?: string;
  limit?: number;
  fromSeq?: number;
  json: boolean;
}

/** Longest error text shown in a table cell, characters. */
const ERROR_COLUMN_WIDTH = 72;
/** Longest input or params shown by `show` outside `--json`, characters. */
const VALUE_PREVIEW_CHARS = 2_000;

/** `dlq list`: a table, oldest first, or the summaries as JSON. */
export async function dlqList(
  admin: DeadLetterAdmin,
  options: DlqListOptions,
  out: Output,
): Promise<void> {
  const letters = await admin.list({
    ...(options.model === undefined ? {} : { model: options.model }),
    ...(options.limit === undefined ? {} : { limit: options.limit }),
    ...(options.fromSeq === undefined ? {} : { fromSeq: options.fromSeq }),
  });
  if (options.json) {
    out.write(JSON.stringify(letters, null, 2) + '\n');
    return;
  }
  if (letters.length === 0) {
    out.write(
      options.model === undefined
        ? 'No dead letters.\n'
        : `No dead letters for ${options.model}.\n`,
    );
    return;
  }
  out.write(renderTable(letters));
  const last = letters.at(-1);
  if (last && letters.length === (options.limit ?? DEFAULT_DEAD_LETTER_LIST_LIMIT)) {
    out.write(`(more may follow: --from ${last.seq + 1})\n`);
  }
}

/** `dlq show <seq>`: one letter with its task, or the whole detail as JSON. */
export async function dlqShow(
  admin: DeadLetterAdmin,
  seq: number,
  json: boolean,
  out: Output,
): Promise<void> {
  const letter = await admin.get(seq);
  if (!letter) throw new CliError(`dead letter ${seq} does not exist`);
  out.write(json ? JSON.stringify(letter, null, 2) + '\n' : renderDetail(letter));
}

/** `dlq replay <seq>`: runs the task again under its own id. */
export async function dlqReplay(admin: DeadLetterAdmin, seq: number, out: Output): Promise<void> {
  const { taskId } = await admin.replay(seq);
  out.write(
    `Replayed dead letter ${seq}: task ${taskId} is queued again (GET /v1/tasks/${taskId}).\n`,
  );
}

function shortTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

function clip(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

/** Renders summaries as left-aligned columns. */
export function renderTable(letters: readonly DeadLetterSummary[]): string {
  const header = ['SEQ', 'TIME', 'MODEL', 'STATE', 'ATTEMPTS', 'TASK', 'TENANT', 'ERROR'];
  const rows = letters.map((l) => [
    String(l.seq),
    shortTime(l.time),
    l.model,
    l.undecodable ? 'undecodable' : (l.state ?? '-'),
    l.attempts === undefined ? '-' : String(l.attempts),
    l.taskId ?? '-',
    l.tenant ?? '-',
    clip(`${l.error.code}: ${l.error.message}`, ERROR_COLUMN_WIDTH),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ') + '\n';
  return line(header) + rows.map(line).join('');
}

function preview(value: unknown): string {
  const json = JSON.stringify(value) ?? 'undefined';
  return json.length <= VALUE_PREVIEW_CHARS
    ? json
    : `${json.slice(0, VALUE_PREVIEW_CHARS)}… (${json.length} characters; --json shows all)`;
}

/** Renders one letter for a terminal. */
export function renderDetail(letter: DeadLetterDetail): string {
  const fields: [string, string][] = [
    ['seq', String(letter.seq)],
    ['stored', letter.time],
    ['subject', letter.subject],
    ['model', letter.model],
  ];
  const { letter: record } = letter;
  if (record) {
    const { task } = record;
    fields.push(
      ['task', task.id],
      ['tenant', task.tenant],
      ['state', `${letter.state ?? '-'} after ${record.attempts} attempt(s)`],
      ['error', `${record.error.code}: ${record.error.message}`],
      ['dead at', new Date(record.deadAt).toISOString()],
      ['actor', record.actor ?? '-'],
      ['priority', task.priority],
      ['version', task.version ?? '(any)'],
      ['created', new Date(task.createdAt).toISOString()],
      [
        'deadline',
        `${new Date(task.deadline).toISOString()} (budget ${Math.round((task.deadline - task.createdAt) / 1000)} s)`,
      ],
      ['params', preview(task.params)],
      ['input', preview(task.input)],
    );
  } else {
    fields.push(
      ['undecodable', 'yes: the request could not be decoded, so it cannot be replayed'],
      ['error', `${letter.error.code}: ${letter.error.message}`],
      [
        'raw',
        `${Buffer.from(letter.raw ?? '', 'base64').byteLength} bytes (base64): ${clip(letter.raw ?? '', VALUE_PREVIEW_CHARS)}`,
      ],
    );
  }
  const width = Math.max(...fields.map(([name]) => name.length));
  const body = fields.map(([name, value]) => `${name.padEnd(width)}  ${value}\n`).join('');
  return record ? `${body}\nReplay it with: npx vigil dlq replay ${letter.seq}\n` : body;
}
