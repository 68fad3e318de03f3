//! `cubed keys`: create, list and revoke API keys in a data directory.

use cubed::model::Tenant;
use cubed::model::access::Role;
use cubed::service::auth::create_key;
use cubed::storage::KeyStore;
use cubed::storage::embedded::credentials::KeyFile;

use crate::cli::{KeysArgs, KeysCommand};

/// A service as the CLI names it: `default-service` is the default one.
pub fn service(name: &str) -> Result<Tenant, String> {
    if name == "default-service" {
        return Ok(Tenant::default_tenant());
    }
    Tenant::from_header(Some(name)).map_err(|e| format!("--service: {e}"))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn run(args: KeysArgs) -> Result<(), String> {
    let store: Box<dyn KeyStore> = match &args.store {
        Some(url) => Box::new(
            cubed::storage::mongo::MongoStore::connect(
                url,
                0,
                cubed::storage::mongo::CacheMode::Capped,
            )
            .map_err(|e| format!("connecting to MongoDB: {e}"))?,
        ),
        None => Box::new(KeyFile::in_dir(&args.data_dir)),
    };
    let where_ = match &args.store {
        Some(_) => "the MongoDB store".to_owned(),
        None => args.data_dir.display().to_string(),
    };
    let at = |e: cubed::storage::StoreError| format!("keys in {where_}: {e}");
    match args.command {
        KeysCommand::Create {
            service: name,
            role,
        } => {
            let tenant = service(&name)?;
            let role = Role::parse(&role)
                .ok_or_else(|| format!("--role {role:?}: expected read, write or admin"))?;
            let (record, key) = create_key(&*store, &tenant, role, now_ms()).map_err(at)?;
            eprintln!(
                "created key {} for service {} with role {} (shown only now: keep it)",
                record.id,
                tenant.display_name(),
                record.role
            );
            println!("{key}");
        }
        KeysCommand::List { service: only } => {
            let only = only.as_deref().map(service).transpose()?;
            println!(
                "{:<16}  {:<20}  {:<5}  {:<24}  REVOKED",
                "ID", "SERVICE", "ROLE", "CREATED"
            );
            for r in store.keys().map_err(at)? {
                let tenant = r.tenant();
                if only.as_ref().is_some_and(|o| *o != tenant) {
                    continue;
                }
                let time = cubed::model::time::format_iso;
                println!(
                    "{:<16}  {:<20}  {:<5}  {:<24}  {}",
                    r.id,
                    tenant.display_name(),
                    r.role,
                    time(r.created_ms),
                    r.revoked_ms.map(time).unwrap_or_else(|| "-".to_owned())
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if store.revoke_key(&id, now_ms()).map_err(at)? {
                eprintln!("revoked key {id}");
            } else {
                return Err(format!("no unrevoked key with id {id}"));
            }
        }
    }
    Ok(())
}
