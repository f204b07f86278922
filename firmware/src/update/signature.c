//! Ed25519 and SHA-256 for package verification, from third-party libraries fetched at build
//! time (never committed): Monocypher (pymonocypher sdist) checks the Ed25519 equation,
//! pycryptodome's portable SHA-2 (its sdist) hashes. Monocypher's core file has no SHA-2,
//! and MCUboot's Ed25519 needs SHA-512 inside the signature and SHA-256 for the image.
#include <string.h>

#include "aiot/update.h"
#include "monocypher.h"

// pycryptodome exports these from SHA256.c / SHA512.c (no header of its own for them).
int SHA256_oneshot(const uint8_t *in, size_t len, uint8_t *digest, size_t digest_size);
int SHA512_oneshot(const uint8_t *in, size_t len, uint8_t *digest, size_t digest_size);

void aiot_sha256(const uint8_t *data, size_t len, uint8_t out[32]) { (void)SHA256_oneshot(data, len, out, 32); }

int aiot_ed25519_check(const uint8_t sig[64], const uint8_t public_key[32], const uint8_t *msg, size_t len) {
    // RFC 8032 5.1.7: k = SHA-512(R || A || M) mod L, then [S]B == R + [k]A.
    // Messages here are MCUboot's 32-byte image digests, so R || A || M fits on the stack.
    uint8_t buf[64 + 64];
    uint8_t k64[64], k[32];
    if (len > sizeof buf - 64) return -1;
    memcpy(buf, sig, 32);
    memcpy(buf + 32, public_key, 32);
    memcpy(buf + 64, msg, len);
    if (SHA512_oneshot(buf, 64 + len, k64, 64) != 0) return -1;
    crypto_eddsa_reduce(k, k64);
    return crypto_eddsa_check_equation(sig, public_key, k);
}
