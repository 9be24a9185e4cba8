"""Verify a stella capsule with securesystemslib, an independent DSSE
implementation, given only the PEM public key.

usage: verify_dsse.py CAPSULE.json PUBLIC_KEY.pem [--expect-fail]
Prints OK (exit 0) when the outcome is the expected one.
"""

import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

capsule_path, pem_path = sys.argv[1], sys.argv[2]
expect_fail = "--expect-fail" in sys.argv

pub = serialization.load_pem_public_key(open(pem_path, "rb").read())
der = pub.public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
# The key id is defined as the hex sha256 of the SPKI DER: computed here,
# independently, and it must be the one the envelope carries.
keyid = hashlib.sha256(der).hexdigest()
key = SSlibKey.from_crypto(pub, keyid=keyid)

capsule = json.load(open(capsule_path))
envelope = Envelope.from_dict(capsule["envelope"])
assert envelope.payload_type == "application/vnd.in-toto+json", envelope.payload_type
assert keyid in envelope.signatures, f"no signature with keyid {keyid}"

try:
    envelope.verify([key], 1)
except VerificationError as e:
    if expect_fail:
        print("OK: verification failed as expected:", e)
        sys.exit(0)
    raise
if expect_fail:
    sys.exit("verification passed but should have failed")

statement = json.loads(envelope.payload)
assert statement["_type"] == "https://in-toto.io/Statement/v1", statement["_type"]
assert statement["predicateType"] == "https://stella-ops.org/decision-capsule/v1"
(subject,) = statement["subject"]
predicate = statement["predicate"]
assert subject["name"] == predicate["app"]
assert "sha256:" + subject["digest"]["sha256"] == predicate["release"]["digest"]
# Every embedded blob is named by the sha256 of its content.
for blob in capsule["evidence"]:
    content = base64.b64decode(blob["content_base64"])
    assert "sha256:" + hashlib.sha256(content).hexdigest() == blob["digest"], blob["digest"]
print("OK:", predicate["action"], predicate["app"], predicate["to"], predicate["decision"])
