-- The app database as release 0.1.0 created it (Base.metadata.create_all, before Alembic).
-- Frozen: tests/test_db_migrations.py upgrades a database made from it. Do not edit.

CREATE TABLE alerts (
	id SERIAL NOT NULL,
	kind VARCHAR(32) NOT NULL,
	subject VARCHAR(64) NOT NULL,
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	ended_at TIMESTAMP WITHOUT TIME ZONE,
	detected_at TIMESTAMP WITHOUT TIME ZONE,
	expected FLOAT NOT NULL,
	seen FLOAT NOT NULL,
	details TEXT NOT NULL,
	notified_open BOOLEAN NOT NULL,
	notified_closed BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_alerts_kind ON alerts (kind);

CREATE INDEX ix_alerts_started_at ON alerts (started_at);

CREATE TABLE convert_seen_docs (
	doc_id VARCHAR(128) NOT NULL,
	batch_id VARCHAR(255) NOT NULL,
	first_seen TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (doc_id)
);

CREATE INDEX ix_convert_seen_docs_first_seen ON convert_seen_docs (first_seen);

CREATE TABLE dashboard_users (
	id SERIAL NOT NULL,
	email VARCHAR(320) NOT NULL,
	password_hash VARCHAR(500) NOT NULL,
	is_admin BOOLEAN NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (email)
);

CREATE TABLE dashboard_workers (
	id SERIAL NOT NULL,
	name VARCHAR(100) NOT NULL,
	owner VARCHAR(320) NOT NULL,
	provider VARCHAR(16) NOT NULL,
	ssh_public_key TEXT NOT NULL,
	state VARCHAR(16) NOT NULL,
	instance_id VARCHAR(100),
	address VARCHAR(500),
	connect_command TEXT,
	launched_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	expires_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	warned_at TIMESTAMP WITHOUT TIME ZONE,
	terminated_at TIMESTAMP WITHOUT TIME ZONE,
	reason TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX ix_dashboard_workers_owner ON dashboard_workers (owner);

CREATE INDEX ix_dashboard_workers_state ON dashboard_workers (state);

CREATE TABLE hourly_stats (
	hour TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	source VARCHAR(16) NOT NULL,
	outcome VARCHAR(64) NOT NULL,
	channel VARCHAR(64) NOT NULL,
	doc_type VARCHAR(64) NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (hour, source, outcome, channel, doc_type)
);

CREATE TABLE jobs (
	id SERIAL NOT NULL,
	name VARCHAR(100) NOT NULL,
	owner VARCHAR(320) NOT NULL,
	tarball_key VARCHAR(500) NOT NULL,
	command TEXT NOT NULL,
	output_dir VARCHAR(500) NOT NULL,
	frequency VARCHAR(16) NOT NULL,
	day_of_week INTEGER,
	day_of_month INTEGER,
	hour INTEGER NOT NULL,
	timeout_minutes INTEGER NOT NULL,
	enabled BOOLEAN NOT NULL,
	end_date TIMESTAMP WITHOUT TIME ZONE,
	runner VARCHAR(16) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	expiry_notified_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	UNIQUE (name)
);

CREATE INDEX ix_jobs_owner ON jobs (owner);

CREATE TABLE scheduler_heartbeats (
	id SERIAL NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	beat_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE stats_counted_batches (
	source VARCHAR(16) NOT NULL,
	batch_id VARCHAR(255) NOT NULL,
	counted_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (source, batch_id)
);

CREATE INDEX ix_stats_counted_batches_counted_at ON stats_counted_batches (counted_at);

CREATE TABLE dashboard_api_tokens (
	id SERIAL NOT NULL,
	user_id INTEGER NOT NULL,
	label VARCHAR(100) NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	last_used_at TIMESTAMP WITHOUT TIME ZONE,
	PRIMARY KEY (id),
	FOREIGN KEY(user_id) REFERENCES dashboard_users (id) ON DELETE CASCADE,
	UNIQUE (token_hash)
);

CREATE INDEX ix_dashboard_api_tokens_user_id ON dashboard_api_tokens (user_id);

CREATE TABLE runs (
	id SERIAL NOT NULL,
	job_id INTEGER NOT NULL,
	scheduled_for TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	trigger VARCHAR(16) NOT NULL,
	state VARCHAR(16) NOT NULL,
	started_at TIMESTAMP WITHOUT TIME ZONE,
	finished_at TIMESTAMP WITHOUT TIME ZONE,
	exit_code INTEGER,
	reason TEXT,
	log_key VARCHAR(500),
	published_files JSON,
	instance_id VARCHAR(64),
	cancel_requested BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT one_run_per_firing UNIQUE (job_id, scheduled_for),
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_runs_job_id ON runs (job_id);

CREATE INDEX ix_runs_state ON runs (state);
