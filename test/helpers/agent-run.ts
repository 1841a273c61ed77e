/**
 * An agent run in the test's own process (Agent.start) against the sim
 * camera and the device API stub, as the in-process agent suites (MQTT
 * alerts, MQTT commands, email alerts) set it up, so the set-up is written
 * once:
 *
 * - simAgentConfig: the config they share (2 s segments, development, the
 *   stub's bind code), with the suite's own overrides on top;
 * - captureLog: a debug logger whose lines the test reads back, raw (to
 *   prove a secret is absent) and parsed (to find a message);
 * - startMqttRig: for the MQTT suites, a real aedes broker that knows the
 *   device, behind a TCP proxy the test breaks, with the camera and stub.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig, type AgentConfig, type AgentConfigInput } from '../../agent/config.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { TestBroker } from './mqtt-test-broker.js';
import { DeviceApiStub } from './device-api-stub.js';
import { TcpProxy } from './tcp-proxy.js';

/** The agent's config for `serial` recording `camera`, bound through the stub `cloud`. */
export function simAgentConfig(
  rig: { serial: string; camera: SimCamera; cloud: DeviceApiStub },
  dataDir: string,
  over: Partial<AgentConfigInput> = {},
): AgentConfig {
  return loadAgentConfig({
    env: {},
    overrides: {
      serial: rig.serial,
      cloudUrl: rig.cloud.url,
      input: rig.camera.streamUrl,
      eventsUrl: rig.camera.eventsUrl,
      dataDir,
      segmentSeconds: 2,
      development: true,
      bindCode: rig.cloud.bindCode,
      ...over,
    },
  });
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** A debug logger that keeps every line it writes, as written and parsed. */
export function captureLog(): { logger: Logger; rawLog: string[]; logLines: LogLine[] } {
  const rawLog: string[] = [];
  const logLines: LogLine[] = [];
  const logger = createLogger({ level: 'debug' }, {
    write: (s: string) => {
      rawLog.push(s);
      logLines.push(JSON.parse(s) as LogLine);
    },
  });
  return { logger, rawLog, logLines };
}

export interface MqttRig {
  /** a temporary directory for the suite's data dirs, removed by close */
  root: string;
  camera: SimCamera;
  cloud: DeviceApiStub;
  broker: TestBroker;
  /** in front of the broker: the agent's mqttUrl points here */
  proxy: TcpProxy;
  /** the agent's MQTT URL, through the proxy */
  mqttUrl: string;
  close(): Promise<void>;
}

/** The stub, a broker that lets `serial` in with `mqttPassword` (what the stub's claim answers), the proxy and the camera. */
export async function startMqttRig(serial: string, mqttPassword: string, tmpPrefix: string): Promise<MqttRig> {
  const root = mkdtempSync(join(tmpdir(), tmpPrefix));
  // what has started is stopped again if a later part fails to start
  const started: (() => Promise<void> | void)[] = [() => rmSync(root, { recursive: true, force: true })];
  const undo = async (): Promise<void> => {
    for (const stop of started.reverse()) await stop();
  };
  let cloud: DeviceApiStub, broker: TestBroker, proxy: TcpProxy, camera: SimCamera;
  try {
    cloud = await DeviceApiStub.start();
    started.push(() => cloud.close());
    broker = await TestBroker.start();
    started.push(() => broker.close());
    broker.credentials.set(serial, mqttPassword);
    proxy = await TcpProxy.start({ host: '127.0.0.1', port: broker.port });
    started.push(() => proxy.close());
    camera = await SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger: createLogger({ level: 'silent' }) });
  } catch (err) {
    await undo();
    throw err;
  }
  return {
    root,
    camera,
    cloud,
    broker,
    proxy,
    mqttUrl: `mqtt://127.0.0.1:${proxy.address.port}`,
    close: async () => {
      await camera.stop();
      await proxy.close();
      await broker.close();
      await cloud.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
