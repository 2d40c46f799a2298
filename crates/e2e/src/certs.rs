//! Self-signed certificates for test SNIs.

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM.
    pub key: String,
    /// Certificate DER, to compare with what a server presented.
    pub der: Vec<u8>,
}

impl TestCert {
    /// An ECDSA P-256 certificate for `names`.
    pub fn ecdsa(names: &[&str]) -> Self {
        Self::make(names, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// An RSA-2048 certificate for `names`.
    pub fn rsa(names: &[&str]) -> Self {
        Self::make(names, &rcgen::PKCS_RSA_SHA256)
    }

    /// An ECDSA certificate for `names` that expired in 2020.
    pub fn expired(names: &[&str]) -> Self {
        Self::make_with(names, &rcgen::PKCS_ECDSA_P256_SHA256, |p| {
            p.not_before = rcgen::date_time_ymd(2019, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        })
    }

    fn make(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Self {
        Self::make_with(names, alg, |_| {})
    }

    fn make_with(
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Self {
        let key = rcgen::KeyPair::generate_for(alg).expect("generate key");
        let mut params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("certificate params");
        edit(&mut params);
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        let cert = params.self_signed(&key).expect("self-sign");
        TestCert { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// The Admin API body of an SSL object for `snis`.
    pub fn ssl_body(&self, snis: &[&str]) -> serde_json::Value {
        serde_json::json!({ "cert": self.cert, "key": self.key, "snis": snis })
    }
}
