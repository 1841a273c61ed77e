import { parseArgs } from 'node:util';
import { createLogger } from '../shared/log.js';
import { Agent, agentStatus, type AgentStatus } from './agent.js';
import { AgentConfigError, loadAgentConfig, type AgentConfig } from './config.js';

/**
 * npm run agent -- run [--config FILE]
 * npm run agent -- status [--config FILE] [--json]
 * npm run agent -- email set|test|disable   (not implemented yet)
 */
const USAGE = 'usage: npm run agent -- run [--config FILE] | status [--config FILE] [--json] | email set|test|disable';

function fail(message: string, code: number): never {
  console.error(`agent: ${message}`);
  process.exit(code);
}

function config(file: string | undefined): AgentConfig {
  try {
    return loadAgentConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof AgentConfigError) fail(err.message, 1);
    throw err;
  }
}

function formatAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

function formatStatus(st: AgentStatus): string {
  const lines = [
    `device:      ${st.serial ?? '(not claimed)'}`,
    `queue depth: ${st.queueDepth} clip${st.queueDepth === 1 ? '' : 's'}`,
    `oldest unuploaded clip: ${st.oldestUnuploadedAgeMs === null ? 'none' : `${formatAge(st.oldestUnuploadedAgeMs)} old (${st.oldestUnuploadedClipId})`}`,
    `clips by state: ${Object.entries(st.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  return lines.join('\n');
}

async function run(cfg: AgentConfig): Promise<void> {
  const logger = createLogger({ name: 'agent', level: cfg.logLevel });
  let agent: Agent;
  try {
    agent = await Agent.start({ config: cfg, logger });
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err), 1);
  }
  logger.info({ serial: cfg.serial, channel: cfg.channel, segmentSeconds: cfg.segmentSeconds }, 'agent running');
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      console.error(`agent: ${sig} again, exiting now`);
      process.exit(130);
    }
    logger.info({ signal: sig }, 'stopping');
    agent.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'email') {
    console.error('agent: email alerts are not implemented yet');
    process.exit(2);
  }
  if (command !== 'run' && command !== 'status') fail(command ? `unknown command ${JSON.stringify(command)}\n${USAGE}` : USAGE, 2);
  let values: { config?: string; json?: boolean };
  try {
    ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
  const cfg = config(values.config);
  if (command === 'status') {
    let st: AgentStatus;
    try {
      st = agentStatus(cfg.dataDir);
    } catch (err) {
      fail((err as Error).message, 1);
    }
    console.log(values.json ? JSON.stringify(st) : formatStatus(st));
    return;
  }
  await run(cfg);
}

void main(process.argv.slice(2));
