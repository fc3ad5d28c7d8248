// Audit chain verification in the browser: the same hash as hub/state/audit.go AuditHash,
// sha256 over "LEN:FIELD;" for the previous hash, seq, raft index, time, actor, action, object
// and detail, where LEN is the field's length in UTF-8 bytes.

import { sha256hex } from './sha256.js';

const enc = new TextEncoder();

/** auditPreimage is the exact byte string AuditHash hashes for entry e. */
export function auditPreimage(e) {
  const fields = [e.prev_hash || '', String(e.seq), String(e.raft_index), String(e.ts), e.actor || '', e.action || '', e.object || '', e.detail || ''];
  return enc.encode(fields.map((f) => `${enc.encode(f).length}:${f};`).join(''));
}

/** auditHash computes the hash entry e must carry, as lowercase hex. */
export async function auditHash(e) {
  const bytes = auditPreimage(e);
  if (globalThis.crypto?.subtle) {
    const d = await crypto.subtle.digest('SHA-256', bytes);
    return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return sha256hex(bytes); // plain http on a non-local address: no WebCrypto there
}

/**
 * verifyChain checks entries (any order; a filtered query may leave gaps): every entry's hash
 * must match its content, the entry with seq 1 must have an empty prev_hash, and where two
 * entries are consecutive the later one's prev_hash must be the earlier one's hash. It returns
 * {ok, hashes, links, bad, reason}: bad is the seq of the first entry that fails.
 */
export async function verifyChain(entries) {
  const es = [...entries].sort((a, b) => a.seq - b.seq);
  let links = 0;
  for (let i = 0; i < es.length; i++) {
    const e = es[i];
    const got = await auditHash(e);
    if (got !== e.hash) return { ok: false, hashes: i, links, bad: e.seq, reason: `entry ${e.seq}: hash does not match its content` };
    if (e.seq === 1 && e.prev_hash) return { ok: false, hashes: i + 1, links, bad: e.seq, reason: 'entry 1 has a prev_hash' };
    const p = es[i - 1];
    if (p && p.seq + 1 === e.seq) {
      if (e.prev_hash !== p.hash) return { ok: false, hashes: i + 1, links, bad: e.seq, reason: `entry ${e.seq}: prev_hash is not the hash of entry ${p.seq}` };
      links++;
    }
  }
  return { ok: true, hashes: es.length, links, bad: null, reason: '' };
}
