//! Verification of a signed model package: MCUboot image header and TLVs, image hash,
//! trusted key, Ed25519 signature, then the AIPK container (sections, ABI, sensor schema).
//! Every check names a reason; nothing is trusted before the signature verifies.
#include <string.h>

#include "aiot/le.h"
#include "aiot/protocol.h"
#include "aiot/update.h"


const char *aiot_update_reason_text(int reason) {
    switch (reason) {
    case AIOT_UPD_OK: return "ok";
    case AIOT_UPD_TRUNCATED: return "truncated: shorter than its header and TLVs say";
    case AIOT_UPD_NOT_IMAGE: return "not an MCUboot image (header magic)";
    case AIOT_UPD_BAD_TLV: return "malformed TLV area";
    case AIOT_UPD_BAD_HASH: return "image hash mismatch: the package is corrupted";
    case AIOT_UPD_UNSIGNED: return "not signed (no Ed25519 signature TLV)";
    case AIOT_UPD_WRONG_KEY: return "signed by a key this device does not trust";
    case AIOT_UPD_BAD_SIGNATURE: return "signature does not verify";
    case AIOT_UPD_NOT_PACKAGE: return "not an aiot model package, or a section is corrupted";
    case AIOT_UPD_WRONG_ABI: return "built for another model ABI than this firmware runs";
    case AIOT_UPD_WRONG_SCHEMA: return "for another sensor schema than this installation";
    case AIOT_UPD_TOO_LARGE: return "larger than a model slot";
    case AIOT_UPD_BAD_OFFSET: return "chunk past the next expected offset";
    case AIOT_UPD_NOT_STARTED: return "no update in progress";
    case AIOT_UPD_INCOMPLETE: return "finish before all bytes were received";
    case AIOT_UPD_FLASH: return "flash erase or program failed";
    case AIOT_UPD_BUSY: return "a trial is running";
    case AIOT_UPD_GOLDEN_MISMATCH: return "trial: golden vectors not reproduced bit for bit";
    case AIOT_UPD_TRIAL_RESET: return "trial: device reset before the trial was confirmed";
    case AIOT_UPD_SELF_TEST: return "trial: self-test failed";
    case AIOT_UPD_SLOT_INVALID: return "the recorded slot no longer verifies";
    default: return "unknown reason";
    }
}

// DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410): imgtool's KEYHASH is the
// SHA-256 of this prefix followed by the 32 key bytes.
static const uint8_t ED25519_SPKI_PREFIX[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

static int check_container(const uint8_t *body, uint32_t body_len, uint32_t body_off, const aiot_pkg_expect_t *expect,
                           aiot_pkg_info_t *info) {
    if (body_len < AIOT_PKG_HEADER || aiot_le_rd32(body) != AIOT_PKG_MAGIC || aiot_le_rd16(body + 4) != 1u) return AIOT_UPD_NOT_PACKAGE;
    uint16_t count = aiot_le_rd16(body + 6);
    if (count > AIOT_PKG_MAX_SECTIONS || AIOT_PKG_HEADER + (uint32_t)count * AIOT_PKG_SECTION > body_len)
        return AIOT_UPD_NOT_PACKAGE;
    info->abi = aiot_le_rd32(body + 8);
    info->schema_id = aiot_le_rd32(body + 12);
    info->model_version = aiot_le_rd32(body + 16);
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *s = body + AIOT_PKG_HEADER + (uint32_t)i * AIOT_PKG_SECTION;
        uint16_t kind = aiot_le_rd16(s);
        uint32_t off = aiot_le_rd32(s + 4), len = aiot_le_rd32(s + 8), crc = aiot_le_rd32(s + 12);
        if (kind == 0 || kind > AIOT_PKG_MAX_SECTIONS || off > body_len || len > body_len - off) return AIOT_UPD_NOT_PACKAGE;
        if (aiot_crc32_update(0, body + off, len) != crc) return AIOT_UPD_NOT_PACKAGE;
        info->section_offset[kind] = body_off + off;
        info->section_length[kind] = len;
    }
    if (info->abi != expect->abi) return AIOT_UPD_WRONG_ABI;
    if (expect->schema_id != 0 && info->schema_id != expect->schema_id) return AIOT_UPD_WRONG_SCHEMA;
    return AIOT_UPD_OK;
}

int aiot_pkg_verify(const uint8_t *img, uint32_t len, const aiot_pkg_expect_t *expect, aiot_pkg_info_t *out) {
    aiot_pkg_info_t scratch;
    aiot_pkg_info_t *info = out ? out : &scratch;
    memset(info, 0, sizeof *info);
    if (len < 32) return AIOT_UPD_TRUNCATED;
    if (aiot_le_rd32(img) != AIOT_IMG_MAGIC) return AIOT_UPD_NOT_IMAGE;
    uint32_t hdr_size = aiot_le_rd16(img + 8), prot_size = aiot_le_rd16(img + 10), img_size = aiot_le_rd32(img + 12);
    memcpy(info->version, img + 20, 8);
    if (hdr_size < 32 || hdr_size > len || img_size > len - hdr_size) return AIOT_UPD_TRUNCATED;
    uint32_t off = hdr_size + img_size;
    if (prot_size != 0) {
        if (prot_size < 4 || prot_size > len - off) return AIOT_UPD_TRUNCATED;
        if (aiot_le_rd16(img + off) != AIOT_IMG_TLV_PROT_INFO_MAGIC || aiot_le_rd16(img + off + 2) != prot_size) return AIOT_UPD_BAD_TLV;
        off += prot_size;
    }
    uint32_t hashed = off;
    if (len - off < 4) return AIOT_UPD_TRUNCATED;
    if (aiot_le_rd16(img + off) != AIOT_IMG_TLV_INFO_MAGIC) return AIOT_UPD_BAD_TLV;
    uint32_t tlv_end = off + aiot_le_rd16(img + off + 2);
    if (tlv_end > len) return AIOT_UPD_TRUNCATED;
    info->image_bytes = tlv_end;
    const uint8_t *hash = NULL, *keyhash = NULL, *pubkey = NULL, *sig = NULL;
    for (off += 4; off < tlv_end;) {
        if (tlv_end - off < 4) return AIOT_UPD_BAD_TLV;
        uint16_t type = aiot_le_rd16(img + off), tlen = aiot_le_rd16(img + off + 2);
        off += 4;
        if (tlen > tlv_end - off) return AIOT_UPD_BAD_TLV;
        const uint8_t *v = img + off;
        if (type == AIOT_IMG_TLV_SHA256 && tlen == 32) hash = v;
        else if (type == AIOT_IMG_TLV_KEYHASH && tlen == 32) keyhash = v;
        else if (type == AIOT_IMG_TLV_PUBKEY && tlen == 44) pubkey = v;
        else if (type == AIOT_IMG_TLV_ED25519 && tlen == 64) sig = v;
        off += tlen;
    }
    if (!hash) return AIOT_UPD_BAD_TLV;
    uint8_t digest[32];
    aiot_sha256(img, hashed, digest);
    memcpy(info->digest, digest, 32);
    if (memcmp(digest, hash, 32) != 0) return AIOT_UPD_BAD_HASH;
    if (!sig) return AIOT_UPD_UNSIGNED;
    uint8_t spki[44];
    memcpy(spki, ED25519_SPKI_PREFIX, 12);
    memcpy(spki + 12, expect->public_key, 32);
    if (keyhash) {
        uint8_t kh[32];
        aiot_sha256(spki, sizeof spki, kh);
        if (memcmp(kh, keyhash, 32) != 0) return AIOT_UPD_WRONG_KEY;
    } else if (pubkey && memcmp(pubkey, spki, 44) != 0) {
        return AIOT_UPD_WRONG_KEY;
    }
    if (aiot_ed25519_check(sig, expect->public_key, digest, 32) != 0) return AIOT_UPD_BAD_SIGNATURE;
    info->body_offset = hdr_size;
    return check_container(img + hdr_size, img_size, hdr_size, expect, info);
}
