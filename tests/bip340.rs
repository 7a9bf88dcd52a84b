//! BIP-340 test vectors (the BIP's own CSV, in tests/data): our signing reproduces every
//! signature with a secret key, and verification agrees with every expected result.

use torrent_gateway::proto::hex;
use torrent_gateway::proto::nostr::{verify_raw, Keys};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn bip340_vectors() {
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/bip340-vectors.csv"
    ))
    .unwrap();
    let mut signed = 0;
    let mut checked = 0;
    for line in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let (index, secret, pubkey, aux, msg, sig, result) =
            (f[0], f[1], f[2], f[3], f[4], f[5], f[6]);
        let msg = unhex(msg);
        let expected = result == "TRUE";
        if !secret.is_empty() {
            let keys = Keys::from_secret(&hex::decode::<32>(secret).unwrap()).unwrap();
            assert_eq!(
                keys.pubkey,
                pubkey.to_ascii_lowercase(),
                "vector {index} pubkey"
            );
            let aux: [u8; 32] = unhex(aux).try_into().unwrap();
            let ours = keys.sign_raw(&msg, &aux).unwrap();
            assert_eq!(
                hex::encode(&ours),
                sig.to_ascii_lowercase(),
                "vector {index} sig"
            );
            signed += 1;
        }
        let verdict = verify_raw(
            &pubkey.to_ascii_lowercase(),
            &msg,
            &sig.to_ascii_lowercase(),
        );
        assert_eq!(verdict.is_ok(), expected, "vector {index} verification");
        checked += 1;
    }
    assert!(
        checked >= 15 && signed >= 4,
        "{checked} checked, {signed} signed"
    );
}
