#!/usr/bin/env python3
"""Independent Package#0 (OMA DM 2.0 DM Notification) encoder and verifier.

Written from the protocol text alone (sections 5.2.1 and 7.1, as read in
docs/protocol-decisions.md), sharing nothing with omadm's Rust code, so that the two can check
each other:

  header  : 16 bits big-endian = VER(4) = 2 | OC(5) = option count | RESERVED(7) = 0
  option  : 16 bits big-endian = delta(4) | length(12), then `length` value bytes;
            options in increasing number, delta = number - previous number
  options : 1 SERVER-ID (UTF-8), 2 PREFERRED-CON-TYPE (one byte each),
            3 NOTIFICATION-ID (2 bytes), 4 SHA256-DIGEST (4-byte time + 32-byte hash),
            5 REQ-MOS (empty)
  digest  : SHA-256(secret || package with the 32 hash bytes set to zero)

Usage:
  independent_encoder.py encode [--server-id S] [--con-types 1,0] [--notification-id N]
                                [--req-mos] [--option N:HEX ...] [--secret K --time T]
      prints the package as lowercase hex
  independent_encoder.py verify HEX --secret K
      prints the decoded options as JSON; exits 1 when the digest is wrong or missing
"""

import argparse
import hashlib
import json
import struct
import sys

SERVER_ID, PREFERRED_CON_TYPE, NOTIFICATION_ID, SHA256_DIGEST, REQ_MOS = 1, 2, 3, 4, 5
CON_TYPE_NAMES = {0: "any", 1: "mobile", 2: "wireless", 3: "wireline"}


def build(options):
    """options: list of (number, bytes) in any order -> package bytes."""
    options = sorted(options)
    package = struct.pack(">H", (2 << 12) | (len(options) << 7))
    previous = 0
    for number, value in options:
        delta = number - previous
        if not 1 <= delta <= 15 or len(value) > 4095:
            raise ValueError(f"option {number} cannot be encoded")
        package += struct.pack(">H", (delta << 12) | len(value)) + value
        previous = number
    return package


def split(package):
    """package bytes -> (list of (number, value offset, value bytes))."""
    (header,) = struct.unpack_from(">H", package, 0)
    if header >> 12 != 2:
        raise ValueError(f"version {header >> 12}")
    count = (header >> 7) & 0x1F
    position, number, options = 2, 0, []
    for _ in range(count):
        (prefix,) = struct.unpack_from(">H", package, position)
        number += prefix >> 12
        length = prefix & 0x0FFF
        position += 2
        if position + length > len(package):
            raise ValueError(f"option {number} runs past the end")
        options.append((number, position, package[position:position + length]))
        position += length
    if position != len(package):
        raise ValueError("trailing bytes")
    return options


def digest_of(secret, package_with_zero_hash):
    return hashlib.sha256(secret + package_with_zero_hash).digest()


def encode(arguments):
    options = []
    if arguments.server_id is not None:
        options.append((SERVER_ID, arguments.server_id.encode("utf-8")))
    if arguments.con_types:
        options.append((PREFERRED_CON_TYPE, bytes(int(x) for x in arguments.con_types.split(","))))
    if arguments.notification_id is not None:
        options.append((NOTIFICATION_ID, struct.pack(">H", arguments.notification_id)))
    if arguments.req_mos:
        options.append((REQ_MOS, b""))
    for text in arguments.option:
        number, value = text.split(":", 1)
        options.append((int(number), bytes.fromhex(value)))
    if arguments.secret is None:
        print(build(options).hex())
        return 0
    # Step 1: time and zero digest; step 2: hash secret || package; step 3: put the hash in.
    options.append((SHA256_DIGEST, struct.pack(">I", arguments.time) + bytes(32)))
    package = bytearray(build(options))
    (_, offset, _) = next(entry for entry in split(bytes(package)) if entry[0] == SHA256_DIGEST)
    package[offset + 4:offset + 36] = digest_of(arguments.secret.encode("utf-8"), bytes(package))
    print(bytes(package).hex())
    return 0


def verify(arguments):
    package = bytes.fromhex(arguments.package)
    options = split(package)
    fields = {"unknown": [], "req_mos": False}
    digest = None
    for number, offset, value in options:
        if number == SERVER_ID:
            fields["server_id"] = value.decode("utf-8")
        elif number == PREFERRED_CON_TYPE:
            fields["preferred_con_types"] = [CON_TYPE_NAMES[byte] for byte in value]
        elif number == NOTIFICATION_ID:
            (fields["notification_id"],) = struct.unpack(">H", value)
        elif number == SHA256_DIGEST:
            (time,) = struct.unpack(">I", value[:4])
            fields["digest"] = {"time": time, "hash": value[4:].hex()}
            digest = (offset, value[4:])
        elif number == REQ_MOS:
            fields["req_mos"] = True
        else:
            fields["unknown"].append({"number": number, "value": value.hex()})
    if digest is None:
        print("no SHA256-DIGEST option", file=sys.stderr)
        return 1
    offset, received_hash = digest
    zeroed = package[:offset + 4] + bytes(32) + package[offset + 36:]
    if digest_of(arguments.secret.encode("utf-8"), zeroed) != received_hash:
        print("wrong digest", file=sys.stderr)
        return 1
    print(json.dumps(fields, sort_keys=True))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    encoder = commands.add_parser("encode")
    encoder.add_argument("--server-id")
    encoder.add_argument("--con-types", help="comma-separated byte values, e.g. 1,0")
    encoder.add_argument("--notification-id", type=int)
    encoder.add_argument("--req-mos", action="store_true")
    encoder.add_argument("--option", action="append", default=[], help="NUMBER:HEX")
    encoder.add_argument("--secret")
    encoder.add_argument("--time", type=int, default=0)
    verifier = commands.add_parser("verify")
    verifier.add_argument("package")
    verifier.add_argument("--secret", required=True)
    arguments = parser.parse_args()
    return encode(arguments) if arguments.command == "encode" else verify(arguments)


if __name__ == "__main__":
    sys.exit(main())
