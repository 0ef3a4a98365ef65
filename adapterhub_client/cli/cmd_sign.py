"""`adapters sign` and `adapters keygen`: signed adapters (docs/SIGNING.md). No registry, no network
(except `--sigstore`), no torch."""

from __future__ import annotations

import click

from .output import adapter_warnings, emit_json, json_option, say


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--key",
    type=click.Path(dir_okay=False),
    help="PEM private key: ECDSA P-256 or Ed25519 (an encrypted one reads ADAPTERS_KEY_PASSWORD).",
)
@click.option(
    "--cert-chain",
    "cert_chain",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Sign with the key's certificate: PEM files, the key's certificate first (repeat for several).",
)
@click.option("--sigstore", is_flag=True, help="Keyless signing with the public Sigstore services (needs the network).")
@click.option(
    "--prepare",
    is_flag=True,
    help="Only complete the package (canonical manifest.json, model card) for another tool to sign.",
)
@click.option("--name", help="org/name (for a PEFT or AdapterHub directory).")
@click.option("--version", "version_", metavar="VERSION", help="Version (for a PEFT or AdapterHub directory).")
@click.option("--base", type=click.Path(file_okay=False), help="Base model directory: records its fingerprint.")
@click.option("--base-name", metavar="ORG/NAME", help="The base model's Hugging Face Hub id.")
@json_option
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory (fingerprints are kept there).")
def sign(
    path: str,
    key: str | None,
    cert_chain: tuple[str, ...],
    sigstore: bool,
    prepare: bool,
    name: str | None,
    version_: str | None,
    base: str | None,
    base_name: str | None,
    as_json: bool,
    cache_dir: str | None,
) -> None:
    """Sign the package directory PATH: complete it as publish would (name, version, base, model card),
    write PATH/model.sig (the OpenSSF model signing format, with the adapter's name, version and base in
    the signed statement) and list it in PATH/manifest.json. Publishing PATH then publishes exactly what
    was signed; installs verify it by the [[trust]] rules of config.toml."""
    from ..hub import Hub

    if prepare and (key or cert_chain or sigstore):
        raise click.UsageError("--prepare signs nothing: give no --key, --cert-chain or --sigstore")
    if not prepare and not sigstore and not key:
        raise click.UsageError("give --key KEY.pem (or --sigstore, or --prepare)")
    with Hub(cache_dir=cache_dir) as hub, adapter_warnings():
        done = hub.sign(
            path,
            key,
            cert_chain=cert_chain,
            sigstore=sigstore,
            prepare_only=prepare,
            name=name,
            version=version_,
            base=base,
            base_name=base_name,
        )
    if as_json:
        emit_json(done.to_json())
    elif done.signature is None:
        say(f"prepared {done.name} {done.version} in {done.path}: sign it there as model.sig, then publish")
    else:
        say(f"signed {done.name} {done.version} -> {done.signature} (signer {done.signer})")


@click.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option(
    "--type",
    "kind",
    type=click.Choice(["ecdsa-p256", "ed25519"]),
    default="ecdsa-p256",
    show_default=True,
    help="Key type (model_signing's own verifier accepts only ECDSA keys).",
)
@json_option
def keygen(out: str, kind: str, as_json: bool) -> None:
    """Write a new private key to OUT (PEM, mode 0600) and its public key to OUT.pub (for trusted_keys)."""
    from ..signing.keys import generate_keypair

    private, public, fingerprint = generate_keypair(out, kind)
    if as_json:
        emit_json({"private_key": str(private), "public_key": str(public), "fingerprint": fingerprint, "type": kind})
        return
    say(f"wrote {private} (private, mode 0600) and {public} (public): {fingerprint}")
