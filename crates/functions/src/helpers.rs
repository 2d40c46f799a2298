//! The helper modules CloudFront Functions offer without AWS: `crypto`
//! (`createHash`, `createHmac` with md5, sha1 and sha256; digests in hex,
//! base64 or base64url), `querystring` (`parse`, `stringify`, `escape`,
//! `unescape`, as Node.js's module of that name) and `cloudfront` (whose
//! key-value store is not offered yet), reached with `require(name)` in both
//! runtimes and `import x from 'name'` in `cloudfront-js-2.0`; and
//! `console.log`, whose lines the Admin API's `test` endpoint returns.
//!
//! The glue is JavaScript evaluated once per instance; hashing is native
//! (aws-lc-rs, and [`crate::md5`]).

use base64::Engine as _;
use rquickjs::{Ctx, Exception, Function, Object};

/// The glue: a function of the native helpers that defines `require` and
/// `console` on the global object.
const GLUE: &str = r#"(function (native) {
  'use strict';
  function Hash(alg, key) { this._alg = alg; this._key = key; this._data = ''; this._done = false; }
  Hash.prototype.update = function (data) {
    if (this._done) { throw new Error('Digest already called'); }
    if (typeof data !== 'string') { throw new TypeError('update() takes a string'); }
    this._data += data;
    return this;
  };
  Hash.prototype.digest = function (encoding) {
    if (this._done) { throw new Error('Digest already called'); }
    this._done = true;
    return native.digest(this._alg, this._key, this._data, encoding === undefined ? '' : String(encoding));
  };
  var crypto = {
    createHash: function (alg) { alg = String(alg); native.check(alg); return new Hash(alg, undefined); },
    createHmac: function (alg, key) {
      alg = String(alg); native.check(alg);
      if (typeof key !== 'string') { throw new TypeError('createHmac() takes the key as a string'); }
      return new Hash(alg, key);
    }
  };
  function unescape(s) {
    s = String(s);
    try { return decodeURIComponent(s); } catch (e) {
      return s.replace(/%([0-9a-fA-F]{2})/g, function (m, h) { return String.fromCharCode(parseInt(h, 16)); });
    }
  }
  function escape(s) { return encodeURIComponent(String(s)); }
  function primitive(v) {
    switch (typeof v) {
      case 'string': return v;
      case 'number': return isFinite(v) ? String(v) : '';
      case 'bigint': return String(v);
      case 'boolean': return v ? 'true' : 'false';
      default: return '';
    }
  }
  var querystring = {
    escape: escape,
    unescape: unescape,
    parse: function (qs, sep, eq, options) {
      sep = sep || '&'; eq = eq || '=';
      var out = {};
      if (typeof qs !== 'string' || qs.length === 0) { return out; }
      var maxKeys = (options && typeof options.maxKeys === 'number') ? options.maxKeys : 1000;
      var decode = (options && typeof options.decodeURIComponent === 'function') ? options.decodeURIComponent : unescape;
      var parts = qs.split(sep);
      if (maxKeys > 0 && parts.length > maxKeys) { parts = parts.slice(0, maxKeys); }
      for (var i = 0; i < parts.length; i++) {
        var part = parts[i], at = part.indexOf(eq);
        var k = at >= 0 ? part.slice(0, at) : part, v = at >= 0 ? part.slice(at + eq.length) : '';
        if (k.length === 0 && v.length === 0) { continue; }
        k = decode(k.replace(/\+/g, ' ')); v = decode(v.replace(/\+/g, ' '));
        if (!Object.prototype.hasOwnProperty.call(out, k)) { out[k] = v; }
        else if (Array.isArray(out[k])) { out[k].push(v); }
        else { out[k] = [out[k], v]; }
      }
      return out;
    },
    stringify: function (obj, sep, eq, options) {
      sep = sep || '&'; eq = eq || '=';
      if (obj === null || typeof obj !== 'object') { return ''; }
      var encode = (options && typeof options.encodeURIComponent === 'function') ? options.encodeURIComponent : escape;
      var keys = Object.keys(obj), out = [];
      for (var i = 0; i < keys.length; i++) {
        var v = obj[keys[i]], ks = encode(primitive(keys[i])) + eq;
        if (Array.isArray(v)) {
          for (var j = 0; j < v.length; j++) { out.push(ks + encode(primitive(v[j]))); }
        } else {
          out.push(ks + encode(primitive(v)));
        }
      }
      return out.join(sep);
    }
  };
  querystring.decode = querystring.parse;
  querystring.encode = querystring.stringify;
  var cloudfront = {
    kvs: function () { throw new Error('key value stores are not available in shardgate yet'); }
  };
  var modules = { crypto: crypto, querystring: querystring, cloudfront: cloudfront };
  function show(x) {
    if (typeof x === 'object' && x !== null) { try { return JSON.stringify(x); } catch (e) { return String(x); } }
    return String(x);
  }
  Object.defineProperty(globalThis, 'require', {
    value: function require(name) {
      if (Object.prototype.hasOwnProperty.call(modules, name)) { return modules[name]; }
      throw new Error("Cannot find module '" + name + "'");
    }
  });
  var log = function () { native.log(Array.prototype.map.call(arguments, show).join(' ')); };
  Object.defineProperty(globalThis, 'console', { value: { log: log, info: log, warn: log, error: log } });
})"#;

/// The modules `import` can name in `cloudfront-js-2.0`, each re-exporting
/// what `require` returns.
pub(crate) const MODULES: [(&str, &str); 3] = [
    ("cloudfront", "export default require('cloudfront');"),
    ("crypto", "export default require('crypto');"),
    ("querystring", "export default require('querystring');"),
];

/// Installs `require` and `console` in `ctx`; `log` receives each
/// `console.log` line.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, log: impl Fn(String) + 'static) -> rquickjs::Result<()> {
    let native = Object::new(ctx.clone())?;
    native.set("check", Function::new(ctx.clone(), |ctx: Ctx<'js>, alg: String| check(&ctx, &alg))?)?;
    native.set(
        "digest",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, alg: String, key: Option<String>, data: String, enc: String| {
            digest(&ctx, &alg, key.as_deref(), &data, &enc)
        })?,
    )?;
    native.set("log", Function::new(ctx.clone(), move |line: String| log(line))?)?;
    let glue: Function = ctx.eval(GLUE)?;
    glue.call::<_, ()>((native,))
}

fn check(ctx: &Ctx<'_>, alg: &str) -> rquickjs::Result<()> {
    match alg {
        "md5" | "sha1" | "sha256" => Ok(()),
        _ => Err(Exception::throw_type(ctx, &format!("digest method not supported: {alg} (md5, sha1, sha256)"))),
    }
}

fn digest(ctx: &Ctx<'_>, alg: &str, key: Option<&str>, data: &str, encoding: &str) -> rquickjs::Result<String> {
    let bytes: Vec<u8> = match (alg, key) {
        ("md5", None) => crate::md5::digest(data.as_bytes()).to_vec(),
        ("md5", Some(key)) => crate::md5::hmac(key.as_bytes(), data.as_bytes()).to_vec(),
        ("sha1", None) => {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data.as_bytes()).as_ref().to_vec()
        }
        ("sha256", None) => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data.as_bytes()).as_ref().to_vec(),
        ("sha1", Some(key)) => hmac(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key, data),
        ("sha256", Some(key)) => hmac(aws_lc_rs::hmac::HMAC_SHA256, key, data),
        _ => return check(ctx, alg).map(|()| String::new()),
    };
    match encoding {
        "hex" => Ok(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" => Ok(base64::engine::general_purpose::STANDARD.encode(&bytes)),
        "base64url" => Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)),
        // Without an encoding, runtime 1.0 returns a byte string (one
        // character per byte, as Node.js's "binary" encoding); runtime 2.0
        // would return a Buffer, which shardgate does not have: it gets the
        // byte string too.
        "" | "binary" | "latin1" => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        other => Err(Exception::throw_type(ctx, &format!("digest encoding not supported: {other}"))),
    }
}

fn hmac(alg: aws_lc_rs::hmac::Algorithm, key: &str, data: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(alg, key.as_bytes());
    aws_lc_rs::hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}
