"""Find, fetch and check the decisions stella attached to an image, with
tools no one here wrote: the ORAS Python SDK (`oras`) discovers and pulls
the referrers, securesystemslib verifies the verification summary's DSSE
envelope, and Sigstore's published protobuf types parse the bundle.

usage: attached.py REGISTRY REPO sha256:HEX PUBLIC_KEY.pem EXPECT BUNDLE.json
  EXPECT: PASSED or FAILED, the newest summary's verificationResult.
Prints OK (exit 0) when everything holds.
"""

import base64
import hashlib
import json
import os
import sys
import tempfile

import oras.provider
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle

registry, repo, digest, pem_path, expect, bundle_path = sys.argv[1:7]
SUMMARY = "application/vnd.stella.verification-summary.v1+json"
CAPSULE = "application/vnd.stella.decision-capsule.v1+json"
VSA = "https://slsa.dev/verification_summary/v1"

client = oras.provider.Registry(hostname=registry, insecure=True)

# Discovery from the image digest alone: the referrers API, or where the
# registry has none (it answers 404), the referrers tag schema.
api = client.do_request(f"http://{registry}/v2/{repo}/referrers/{digest}", "GET")
if api.status_code == 200:
    index = api.json()
else:
    assert api.status_code == 404, api.status_code
    tag = digest.replace(":", "-")
    index = client.get_manifest(
        f"{registry}/{repo}:{tag}",
        allowed_media_type=["application/vnd.oci.image.index.v1+json"],
    )
entries = index["manifests"]
by_type = {}
for e in entries:
    by_type.setdefault(e.get("artifactType"), []).append(e)
assert by_type.get(SUMMARY), f"no summary among {[e.get('artifactType') for e in entries]}"
assert by_type.get(CAPSULE), f"no capsule among {[e.get('artifactType') for e in entries]}"

pub = serialization.load_pem_public_key(open(pem_path, "rb").read())
der = pub.public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
keyid = hashlib.sha256(der).hexdigest()
key = SSlibKey.from_crypto(pub, keyid=keyid)

out = tempfile.mkdtemp()
summaries = []
for kind in (SUMMARY, CAPSULE):
    for e in by_type[kind]:
        manifest = client.get_manifest(f"{registry}/{repo}@{e['digest']}")
        assert manifest["subject"]["digest"] == digest, manifest["subject"]
        assert manifest["artifactType"] == kind, manifest.get("artifactType")
        (layer,) = manifest["layers"]
        path = client.download_blob(
            f"{registry}/{repo}", layer["digest"], os.path.join(out, layer["digest"][7:])
        )
        blob = open(path, "rb").read()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        doc = json.loads(blob)
        if kind == CAPSULE:
            # A capsule file: its own envelope verifies with the same key.
            Envelope.from_dict(doc["envelope"]).verify([key], 1)
            continue
        envelope = Envelope.from_dict(doc)
        envelope.verify([key], 1)
        statement = json.loads(envelope.payload)
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == VSA, statement["predicateType"]
        (subject,) = statement["subject"]
        assert "sha256:" + subject["digest"]["sha256"] == digest
        p = statement["predicate"]
        for field in (
            "verifier",
            "timeVerified",
            "resourceUri",
            "policy",
            "inputAttestations",
            "verificationResult",
            "verifiedLevels",
        ):
            assert field in p, f"VSA without {field}"
        assert p["resourceUri"].endswith("@" + digest), p["resourceUri"]
        assert p["policy"]["digest"]["sha256"], p["policy"]
        summaries.append(p)

newest = max(summaries, key=lambda p: p["timeVerified"])
assert newest["verificationResult"] == expect, (newest["verificationResult"], expect)

# The bundle parses with Sigstore's own types and carries the same envelope.
bundle = Bundle.from_dict(json.load(open(bundle_path)))
assert bundle.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json", bundle.media_type
assert bundle.verification_material.public_key.hint == keyid
assert bundle.dsse_envelope.payload_type == "application/vnd.in-toto+json"
(sig,) = bundle.dsse_envelope.signatures
assert sig.keyid == keyid
inner = Envelope.from_dict(
    {
        "payload": base64.b64encode(bundle.dsse_envelope.payload).decode(),
        "payloadType": bundle.dsse_envelope.payload_type,
        "signatures": [{"keyid": sig.keyid, "sig": base64.b64encode(sig.sig).decode()}],
    }
)
inner.verify([key], 1)
assert json.loads(inner.payload)["predicateType"] == VSA
print("OK:", len(summaries), "summaries,", len(by_type[CAPSULE]), "capsules; newest", expect)
