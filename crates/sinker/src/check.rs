//! `sinker routes check --routes FILE`: the routes file against the live schema, without Kafka
//! and without writing anything. Prints, per route, the resolved columns (type, nullability,
//! default) and the SQL the route runs; or every problem, one a line.

use std::{fmt::Write as _, io::Write as _, time::Duration};

use anyhow::Context as _;
use sluice_routes::{sql, ResolvedRoutes, RoutesFile, StatementKind};

use crate::{catalog, config::Config};

/// Runs the check and prints its report on stdout. Ok(true): the file is good.
pub async fn run(config: &Config) -> anyhow::Result<bool> {
    let Some(path) = &config.routes else {
        anyhow::bail!("routes check needs --routes FILE (or SINKER_ROUTES)");
    };
    let file = match RoutesFile::load(path) {
        Ok(file) => file,
        Err(error) => {
            print(&format!("{error}\n"))?;
            return Ok(false);
        }
    };
    let store = crate::run::store(config)?;
    let resolved = tokio::time::timeout(Duration::from_secs(30), catalog::resolve(store.pool(), file))
        .await
        .context("the database did not answer within 30 s")?
        .context("could not read the catalog; check DATABASE_URL")?;
    match resolved {
        Ok(routes) => {
            print(&describe(&routes))?;
            Ok(true)
        }
        Err(problems) => {
            let mut out = format!(
                "the routes file {} does not match the database ({} problem{}):\n",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for problem in &problems {
                let _ = writeln!(out, "- {problem}");
            }
            print(&out)?;
            Ok(false)
        }
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The report of a good file: each route, its columns and its statements.
pub fn describe(routes: &ResolvedRoutes) -> String {
    let mut out = format!("the routes file is good: {} routes\n", routes.routes.len());
    for route in &routes.routes {
        let r = &route.route;
        let types: Vec<String> = r.types.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "\nroute {} ({}) into {}, types {}", r.name, r.mode.as_str(), r.table, types.join(", "));
        if !r.key.is_empty() {
            let _ = writeln!(out, "  key: {}", r.key.join(", "));
        }
        if let Some(version) = &r.version {
            let _ = writeln!(out, "  version: {version}");
        }
        if let Some(tombstone) = &r.tombstone_key {
            let _ = writeln!(out, "  tombstone_key: {tombstone} (a tombstone's record key deletes the row)");
        }
        let _ = writeln!(out, "  columns:");
        for column in &route.columns {
            let info = &column.info;
            let mut facts = vec![info.ty.to_string(), if info.nullable { "null" } else { "not null" }.to_owned()];
            if info.has_default {
                facts.push("table default".to_owned());
            }
            if let Some(default) = &column.spec.default {
                facts.push(format!("file default {default}"));
            }
            if column.spec.required {
                facts.push("required".to_owned());
            }
            let _ = writeln!(out, "    {} = {} ({})", column.spec.name, column.spec.path, facts.join(", "));
        }
        for (kind, statement) in sql::describe(route) {
            let kind = match kind {
                StatementKind::Insert => "insert",
                StatementKind::Upsert => "upsert",
                StatementKind::Delete => "delete",
            };
            let _ = writeln!(out, "  {kind}: {statement}");
        }
    }
    out
}
