/**
 * Mosquitto's dynamic security plugin, the parts camvault uses: the
 * $CONTROL commands that provision and revoke a device, and the plugin's
 * JSON file written offline to seed a large fleet (DESIGN.md, "Broker
 * facts": every $CONTROL command rewrites the whole file, so provisioning
 * grows with the square of the fleet; 5,000 devices are seeded by writing the
 * file before Mosquitto starts).
 *
 * The plugin matches %u and %c in ACL topics literally, so each device gets
 * a role of its own with its prefix spelled out.
 */
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { deviceTopicPattern } from '../../shared/topics.js';

export const CONTROL_TOPIC = '$CONTROL/dynamic-security/v1';
export const CONTROL_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';

/** The role the cloud's admin client gets besides the plugin's admin role: read every device's alerts and status, send commands. */
export const CLOUD_ROLE = 'camvault-cloud';

export const deviceRoleName = (serial: string): string => `camvault-device-${serial}`;

export interface DynsecAcl {
  acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribePattern' | 'subscribeLiteral' | 'unsubscribePattern';
  topic: string;
  allow: boolean;
  priority?: number;
}

export type DynsecCommand = { command: string; correlationData?: string } & Record<string, unknown>;

export interface DynsecResponse {
  command: string;
  error?: string;
  correlationData?: string;
  data?: unknown;
}

/** publish and receive under devices/<serial>/#, subscribe there; nothing else */
export function deviceAcls(serial: string): DynsecAcl[] {
  const topic = deviceTopicPattern(serial);
  return [
    { acltype: 'publishClientSend', topic, allow: true },
    { acltype: 'publishClientReceive', topic, allow: true },
    { acltype: 'subscribePattern', topic, allow: true },
  ];
}

/** the cloud's extra rights: the plugin's own admin role only reaches $CONTROL with its publishes */
export function cloudAcls(): DynsecAcl[] {
  return [
    { acltype: 'publishClientSend', topic: 'devices/+/commands', allow: true },
    { acltype: 'subscribePattern', topic: 'devices/+/alerts', allow: true },
    { acltype: 'subscribePattern', topic: 'devices/+/status', allow: true },
    { acltype: 'publishClientReceive', topic: 'devices/+/alerts', allow: true },
    { acltype: 'publishClientReceive', topic: 'devices/+/status', allow: true },
  ];
}

/** A device's role and client, in the order the plugin needs them (the role first). */
export function createDeviceCommands(serial: string, password: string): DynsecCommand[] {
  const rolename = deviceRoleName(serial);
  return [
    { command: 'createRole', rolename, acls: deviceAcls(serial) },
    // clientid: only this client id may use the credential, so no device takes over another's session
    { command: 'createClient', username: serial, clientid: serial, password, roles: [{ rolename }] },
  ];
}

/** Deleting a client disconnects it at once (measured: milliseconds). */
export function deleteDeviceCommands(serial: string): DynsecCommand[] {
  return [
    { command: 'deleteClient', username: serial },
    { command: 'deleteRole', rolename: deviceRoleName(serial) },
  ];
}

/** The commands that set up the cloud's own role and give it to its admin client (idempotent when answered "already exists"). */
export function cloudRoleCommands(adminUser: string): DynsecCommand[] {
  return [
    { command: 'createRole', rolename: CLOUD_ROLE, acls: cloudAcls() },
    { command: 'addClientRole', username: adminUser, rolename: CLOUD_ROLE },
  ];
}

/** Errors that mean the state is already what the command wanted. */
export function isAlreadyDone(command: string, error: string): boolean {
  const e = error.toLowerCase();
  if (command.startsWith('create') || command.startsWith('add')) return e.includes('already');
  if (command.startsWith('delete') || command.startsWith('remove')) return e.includes('not found');
  return false;
}

/**
 * A password as the plugin stores it (mosquitto_ctrl's way, DESIGN.md):
 * PBKDF2-SHA512, 101 iterations, a 12-byte random salt, a 64-byte key, both
 * base64.
 */
export function dynsecPassword(password: string, salt: Buffer = randomBytes(12)): { password: string; salt: string; iterations: number } {
  const iterations = 101;
  return { password: pbkdf2Sync(password, salt, iterations, 64, 'sha512').toString('base64'), salt: salt.toString('base64'), iterations };
}

export interface DynsecFileOptions {
  admin: { username: string; password: string };
  devices?: Iterable<{ serial: string; password: string }>;
}

/**
 * The plugin's whole configuration file: the admin client (with the plugin's
 * own admin role, as `mosquitto_ctrl dynsec init` makes it, plus the cloud's
 * role), and one client and role per device. Defaults deny everything a role
 * does not allow, except receiving what a client may subscribe to.
 */
export function dynsecFile(opts: DynsecFileOptions): object {
  const adminAcls: DynsecAcl[] = [
    { acltype: 'publishClientSend', topic: '$CONTROL/dynamic-security/#', allow: true },
    { acltype: 'publishClientReceive', topic: '$CONTROL/dynamic-security/#', allow: true },
    { acltype: 'subscribePattern', topic: '$CONTROL/dynamic-security/#', allow: true },
    { acltype: 'publishClientReceive', topic: '$SYS/#', allow: true },
    { acltype: 'subscribePattern', topic: '$SYS/#', allow: true },
    { acltype: 'unsubscribePattern', topic: '#', allow: true },
  ];
  const clients: object[] = [
    {
      username: opts.admin.username,
      textName: 'camvault cloud',
      ...dynsecPassword(opts.admin.password),
      roles: [{ rolename: 'admin' }, { rolename: CLOUD_ROLE }],
    },
  ];
  const roles: object[] = [
    { rolename: 'admin', acls: adminAcls },
    { rolename: CLOUD_ROLE, acls: cloudAcls() },
  ];
  for (const d of opts.devices ?? []) {
    const rolename = deviceRoleName(d.serial);
    clients.push({ username: d.serial, clientid: d.serial, ...dynsecPassword(d.password), roles: [{ rolename }] });
    roles.push({ rolename, acls: deviceAcls(d.serial) });
  }
  return {
    clients,
    roles,
    groups: [],
    defaultACLAccess: { publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true },
  };
}
