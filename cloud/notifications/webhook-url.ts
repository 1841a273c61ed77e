/**
 * Which webhook URLs the cloud will POST to. A webhook is a request the
 * cloud makes on a subscriber's behalf, so it must not become a way into the
 * cloud's own network (SSRF): https:// only, no credentials in the URL, and
 * no loopback, private, link-local or otherwise special address, checked
 * when the URL is set (a literal address, "localhost") and again on every
 * delivery (what the name resolves to then, webhook-sender.ts).
 *
 * `allowInsecure` (development, tests) lifts the scheme and address rules.
 */
import { BlockList, isIP } from 'node:net';

const SPECIAL = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  SPECIAL.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  SPECIAL.addSubnet(net, prefix, 'ipv6');
}

/** a loopback, private, link-local, documentation, multicast or unspecified address (IPv4-mapped IPv6 included) */
export function isSpecialAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped) return SPECIAL.check(mapped[1] as string, 'ipv4');
  const family = isIP(bare);
  if (family === 4) return SPECIAL.check(bare, 'ipv4');
  if (family === 6) return SPECIAL.check(bare, 'ipv6');
  return false;
}

/** null when the URL may be used, else why not (for the log; the API answers WEBHOOK_URL_INVALID) */
export function webhookUrlProblem(raw: string, allowInsecure: boolean): string | null {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'not a URL';
  }
  if (u.protocol !== 'https:' && !(allowInsecure && u.protocol === 'http:')) return 'not https';
  if (u.username !== '' || u.password !== '') return 'credentials in the URL';
  if (u.hostname === '') return 'no host';
  if (allowInsecure) return null;
  const host = u.hostname.toLowerCase().replace(/\.$/, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return 'a loopback host';
  if (isSpecialAddress(host)) return 'a loopback, private or special address';
  return null;
}
