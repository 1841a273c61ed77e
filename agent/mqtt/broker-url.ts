/**
 * The broker's URL, wherever it came from (the agent's mqttUrl, the claim
 * answer, GET /v1/device/config), is checked the same way before the agent
 * connects: mqtts://, or plain mqtt:// only in development (P10, like the
 * cloud URL). What the cloud sends is data from the network, so a bad one is
 * reported, not thrown.
 */
export type BrokerUrlCheck =
  | { ok: true; url: string; label: string }
  | { ok: false; code: 'MQTT_URL_INVALID' | 'MQTT_PLAIN_REFUSED'; message: string };

export function checkBrokerUrl(url: string, development: boolean): BrokerUrlCheck {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, code: 'MQTT_URL_INVALID', message: 'the MQTT broker URL does not parse' };
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') {
    return { ok: false, code: 'MQTT_URL_INVALID', message: `the MQTT broker URL must be mqtts:// (or mqtt:// in development), not ${u.protocol}//` };
  }
  if (!u.hostname) return { ok: false, code: 'MQTT_URL_INVALID', message: 'the MQTT broker URL has no host' };
  if (u.protocol === 'mqtt:' && !development) {
    return { ok: false, code: 'MQTT_PLAIN_REFUSED', message: 'the MQTT broker URL is plain mqtt://; only mqtts:// is used outside development' };
  }
  // credentials in a URL are not ours to send: the device logs in with its own
  u.username = '';
  u.password = '';
  return { ok: true, url: u.toString().replace(/\/$/, ''), label: brokerLabel(u) };
}

/** host:port of a broker URL, for logs and `agent status`: never credentials, paths or queries. */
export function brokerLabel(url: URL | string): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  const port = u.port || (u.protocol === 'mqtts:' ? '8883' : '1883');
  return `${u.protocol}//${u.hostname}:${port}`;
}
