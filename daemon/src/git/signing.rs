//! Signed heads (issue 16): `kommit.yaml` may list `trustedSigningKeys`, SSH public keys
//! whose signatures (`git commit -S` with `gpg.format=ssh`: an SSHSIG in the commit's
//! `gpgsig` header, namespace `git`) a head must carry to be adopted. The list that applies
//! is the one in the *adopted* commit, so a push that adds its own key is still refused; the
//! first commit a cluster adopts sets the policy. Only the head is checked, as Flux does.
//!
//! Verification is RustCrypto's `ssh-key` (SSHSIG, Ed25519 and ECDSA P-256); the refusal
//! names the signer by its key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.

/// The SSHSIG namespace git signs commits in.
pub const NAMESPACE: &str = "git";

/// Largest signature read from a commit header.
const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// Whom a head's signature names, if one of `trusted` made it; otherwise why it is refused.
/// `commit` is the raw commit object.
pub fn verify(commit: &[u8], trusted: &[String]) -> Result<String, String> {
    let parsed = gix::objs::CommitRefIter::signature(commit, gix::hash::Kind::Sha1)
        .map_err(|e| format!("the commit cannot be parsed for its signature: {e}"))?;
    let Some((armored, signed)) = parsed else {
        return Err(
            "unsigned: the adopted kommit.yaml requires a signature by one of its trustedSigningKeys"
                .into(),
        );
    };
    if armored.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "the commit's signature is over {MAX_SIGNATURE_BYTES} bytes"
        ));
    }
    let armored: &[u8] = armored.as_ref();
    let sig = ssh_key::SshSig::from_pem(armored).map_err(|e| {
        format!("signed, but not with an SSH signature (git's gpg.format=ssh): {e}")
    })?;
    let signer = format!(
        "{} key {}",
        sig.public_key().algorithm(),
        sig.public_key().fingerprint(ssh_key::HashAlg::Sha256)
    );
    let key = trusted
        .iter()
        .filter_map(|k| ssh_key::PublicKey::from_openssh(k).ok())
        .find(|k| k.key_data() == sig.public_key());
    let Some(key) = key else {
        return Err(format!(
            "signed by {signer}, which is not among the trustedSigningKeys of the adopted kommit.yaml"
        ));
    };
    key.verify(NAMESPACE, &signed.to_bstring(), &sig)
        .map(|()| signer.clone())
        .map_err(|e| {
            format!("signed by {signer}, a trusted key, but the signature does not verify: {e}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_and_malformed_commits_are_refused_with_one_line() {
        let unsigned = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nm\n";
        let err = verify(unsigned, &["ssh-ed25519 AAAA".into()]).unwrap_err();
        assert!(err.starts_with("unsigned"), "{err}");
        let pgp = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQ==\n -----END PGP SIGNATURE-----\n\nm\n";
        let err = verify(pgp, &[]).unwrap_err();
        assert!(err.contains("not with an SSH signature"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
