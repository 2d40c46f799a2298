//! Canary actions on continuous deployment policies (CloudFront's
//! `UpdateDistributionWithStagingConfig` and disabling a policy):
//!
//! - `POST /apisix/admin/continuous_deployment_policies/<id>/promote`: the
//!   staging distribution's configuration (origins and behaviors) becomes the
//!   primary's, which keeps its own hosts, name and policy reference; the
//!   policy is disabled, so everyone gets the primary; and the primary's cache
//!   is invalidated (`/*`), because cached objects of the old configuration
//!   would otherwise stay until they expire (CloudFront leaves that step to
//!   the user; the seed's "promote, then refresh the CDN" is one call here).
//! - `POST .../discard`: the policy is disabled and the staging cache is
//!   invalidated; the primary is untouched.
//!
//! The writes are made in that order, under the Admin API's write lock,
//! and once the lock is taken all of them are made even if the request's
//! time runs out (the write runs in its own task); the reconciler applies
//! them as one batch when they land within its debounce.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shardgate_model::resource::Wire;
use shardgate_model::{ResourceId, ResourceKind, json as mjson};
use shardgate_store::{Condition, Fence, KeyValue};
use tokio::time::Instant;

use super::{AdminState, id_of, now_unix};
use crate::ApiError;

impl AdminState {
    async fn load(&self, kind: ResourceKind, id: &ResourceId) -> Result<(KeyValue, Value), ApiError> {
        let kv = self
            .store()
            .get(&kind.key(self.prefix(), id))
            .await?
            .ok_or_else(|| ApiError::NotFound { what: format!("{} {id}", kind.singular()) })?;
        let value = mjson::parse(&kv.value)
            .map_err(|e| ApiError::BadRequest(format!("stored {} {id} is not JSON: {e}", kind.singular())))?;
        Ok((kv, value))
    }

    /// Validates and writes `value` over `kv` (compare-and-swap on its revision).
    async fn replace(
        &self,
        kind: ResourceKind,
        id: &ResourceId,
        kv: &KeyValue,
        value: Value,
        turn: Option<&mut Fence>,
    ) -> Result<(), ApiError> {
        let mut wire = Wire::from_value(kind, value)?;
        wire.validate(id, self.validation())?;
        let created = wire.times().0.unwrap_or_else(now_unix);
        wire.set_id(id);
        wire.set_times(created, now_unix());
        let bytes = self.stored_bytes(&wire)?;
        let cond = Condition::ModRevision(kv.mod_revision);
        match turn {
            Some(fence) => self.store().put_fenced(&kv.key, bytes, cond, None, fence).await?,
            None => self.store().put(&kv.key, bytes, cond).await?,
        };
        Ok(())
    }

    /// Creates an invalidation of every path of `dist` (the caller has
    /// checked the capacity); returns its key.
    async fn invalidate_all(
        &self,
        dist: &ResourceId,
        why: String,
        turn: Option<&mut Fence>,
    ) -> Result<String, ApiError> {
        let mut wire = Wire::from_value(
            ResourceKind::Invalidations,
            json!({"distribution_id": dist.as_str(), "paths": ["/*"], "caller_reference": why}),
        )?;
        let now = now_unix();
        wire.set_times(now, now);
        self.insert_new(ResourceKind::Invalidations, &mut wire, None, turn).await
    }

    async fn disable(
        &self,
        id: &ResourceId,
        kv: &KeyValue,
        mut policy: Value,
        turn: Option<&mut Fence>,
    ) -> Result<(), ApiError> {
        if let Value::Object(obj) = &mut policy {
            obj.insert("enabled".into(), Value::Bool(false));
        }
        self.replace(ResourceKind::CdPolicies, id, kv, policy, turn).await
    }

    fn staging_of(policy: &Value) -> Result<ResourceId, ApiError> {
        let v = policy.get("staging_distribution_id").cloned().unwrap_or(Value::Null);
        Ok(ResourceId::from_json("staging_distribution_id", &v)?)
    }

    pub(super) async fn promote(&self, id: &ResourceId, deadline: Instant) -> Result<Response, ApiError> {
        let mut turn = self.lock_write(deadline).await?;
        // Checked before any write: a promote either happens whole or not.
        self.check_capacity(ResourceKind::Invalidations).await?;
        let (pkv, policy) = self.load(ResourceKind::CdPolicies, id).await?;
        let staging_id = Self::staging_of(&policy)?;
        let (_, staging) = self.load(ResourceKind::Distributions, &staging_id).await?;

        // The primary is the distribution that refers to this policy.
        let listing = self.store().list(&ResourceKind::Distributions.key_prefix(self.prefix())).await?;
        let primary = listing.kvs.into_iter().find_map(|kv| {
            let v = mjson::parse(&kv.value).ok()?;
            let refers = v
                .get("continuous_deployment_policy_id")
                .and_then(|p| ResourceId::from_json("", p).ok())
                .is_some_and(|p| p == *id);
            refers.then_some((kv, v))
        });
        let Some((dkv, current)) = primary else {
            return Err(ApiError::BadRequest(format!(
                "no distribution uses continuous deployment policy {id}; nothing to promote"
            )));
        };
        let primary_id = id_of(dkv.key.rsplit('/').next().unwrap_or_default())?;

        // Staging's configuration, with the primary's identity.
        let mut next = staging.clone();
        if let (Value::Object(next), Value::Object(cur)) = (&mut next, &current) {
            next.remove("staging");
            for field in ["hosts", "name", "desc", "labels", "continuous_deployment_policy_id", "create_time"] {
                match cur.get(field) {
                    Some(v) => next.insert(field.into(), v.clone()),
                    None => next.remove(field),
                };
            }
        }
        // Only the first write is fenced: it is the one that lands on the
        // checks above. The next ones keep their own conditions but are not
        // fenced, so another instance's write in between cannot stop a
        // promote half-way (a run again would find it half done).
        self.replace(ResourceKind::Distributions, &primary_id, &dkv, next, Some(&mut *turn)).await?;
        let landed = "the primary distribution already serves the staging configuration";
        self.disable(id, &pkv, policy, None).await.map_err(|e| partial(landed, "disabling the policy", e))?;
        let invalidation = self
            .invalidate_all(&primary_id, format!("promote of continuous deployment policy {id}"), None)
            .await
            .map_err(|e| partial(landed, "invalidating its cache", e))?;
        tracing::info!(policy = %id, primary = %primary_id, staging = %staging_id, "staging promoted");
        Ok((
            StatusCode::OK,
            Json(json!({
                "promoted": {
                    "distribution": dkv.key,
                    "from": ResourceKind::Distributions.key(self.prefix(), &staging_id),
                },
                "policy": pkv.key,
                "invalidation": invalidation,
            })),
        )
            .into_response())
    }

    pub(super) async fn discard(&self, id: &ResourceId, deadline: Instant) -> Result<Response, ApiError> {
        let mut turn = self.lock_write(deadline).await?;
        self.check_capacity(ResourceKind::Invalidations).await?;
        let (pkv, policy) = self.load(ResourceKind::CdPolicies, id).await?;
        let staging_id = Self::staging_of(&policy)?;
        self.disable(id, &pkv, policy, Some(&mut *turn)).await?;
        let invalidation = self
            .invalidate_all(&staging_id, format!("discard of continuous deployment policy {id}"), None)
            .await
            .map_err(|e| partial("the policy is disabled", "invalidating the staging cache", e))?;
        tracing::info!(policy = %id, staging = %staging_id, "staging discarded");
        Ok((StatusCode::OK, Json(json!({"discarded": pkv.key, "invalidation": invalidation}))).into_response())
    }
}

/// The error of a canary action that failed after its first write landed:
/// what is already done, what failed, and why.
fn partial(landed: &str, step: &str, e: ApiError) -> ApiError {
    let why = match e {
        ApiError::Store(s) => s.to_string(),
        ApiError::Conflict(m) | ApiError::BadRequest(m) | ApiError::Busy(m) | ApiError::Internal(m) => m,
        other => format!("{other:?}"),
    };
    ApiError::Conflict(format!("{landed}, but {step} failed: {why}; run the action again to finish it"))
}
