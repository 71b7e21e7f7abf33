-- The tables tansu 0.6.0's PostgreSQL engine reads and writes, for a database of the test kit's own
-- (KafkaBroker::start_durable). The tansu crates ship no PostgreSQL schema and the broker creates none;
-- this one follows the queries of tansu-storage 0.6.0 (src/sql, src/pg, src/pg.rs): the column types are
-- the ones its Rust code binds and reads (int4, int8, int2, uuid, jsonb, timestamptz, bytea), since
-- tokio-postgres refuses any other, and the keys are the ones its `on conflict` clauses name.

create table cluster (
    id int generated always as identity primary key,
    name text not null unique,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null
);

create table topic (
    id int generated always as identity primary key,
    cluster int not null references cluster (id) on delete cascade,
    name text not null,
    uuid uuid not null,
    partitions int not null,
    replication_factor int not null,
    is_internal bool default false not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (cluster, name)
);

create table topition (
    id int generated always as identity primary key,
    topic int references topic (id) on delete cascade,
    partition int,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (topic, partition)
);

create table watermark (
    id int generated always as identity primary key,
    topition int unique references topition (id) on delete cascade,
    low bigint,
    high bigint,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null
);

create table topic_configuration (
    id int generated always as identity primary key,
    topic int references topic (id) on delete cascade,
    name text not null,
    value text,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (topic, name)
);

-- Written by binary COPY (topition, offset_id, attributes, producer_id, producer_epoch, timestamp, k, v);
-- a fetch compares transaction_id with the snapshot's xmin to stop at records of transactions still open.
create table record (
    topition int references topition (id) on delete cascade,
    offset_id bigint not null,
    attributes smallint,
    producer_id bigint,
    producer_epoch smallint,
    timestamp timestamptz,
    k bytea,
    v bytea,
    transaction_id xid8 default pg_current_xact_id() not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    primary key (topition, offset_id)
);

create table header (
    topition int,
    offset_id bigint,
    k bytea,
    v bytea,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    foreign key (topition, offset_id) references record (topition, offset_id) on delete cascade
);

create table consumer_group (
    id int generated always as identity primary key,
    cluster int not null references cluster (id) on delete cascade,
    name text not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (cluster, name)
);

create table consumer_group_detail (
    id int generated always as identity primary key,
    consumer_group int unique references consumer_group (id) on delete cascade,
    e_tag uuid not null,
    detail jsonb not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null
);

create table consumer_offset (
    id int generated always as identity primary key,
    consumer_group int references consumer_group (id) on delete cascade,
    topition int references topition (id) on delete cascade,
    committed_offset bigint,
    leader_epoch int,
    timestamp timestamptz,
    metadata text,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (consumer_group, topition)
);

create table producer (
    id bigint generated always as identity primary key,
    cluster int not null references cluster (id) on delete cascade,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null
);

create table producer_epoch (
    id int generated always as identity primary key,
    producer bigint references producer (id) on delete cascade,
    epoch smallint default 0 not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (producer, epoch)
);

create table producer_detail (
    id int generated always as identity primary key,
    producer_epoch int references producer_epoch (id) on delete cascade,
    topition int references topition (id) on delete cascade,
    sequence int default 0 not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (producer_epoch, topition)
);

create table txn (
    id bigint generated always as identity primary key,
    cluster int references cluster (id) on delete cascade,
    name text,
    producer bigint references producer (id) on delete cascade,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (cluster, name)
);

create table txn_detail (
    id bigint generated always as identity primary key,
    "transaction" bigint references txn (id) on delete cascade,
    producer_epoch int references producer_epoch (id) on delete cascade,
    transaction_timeout_ms int not null,
    started_at timestamptz,
    -- BEGIN, PREPARE_COMMIT, PREPARE_ABORT, COMMITTED or ABORTED
    status text,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique ("transaction", producer_epoch)
);

create table txn_topition (
    id bigint generated always as identity primary key,
    txn_detail bigint references txn_detail (id) on delete cascade,
    topition int references topition (id) on delete cascade,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (txn_detail, topition)
);

create table txn_produce_offset (
    id bigint generated always as identity primary key,
    txn_topition bigint unique references txn_topition (id) on delete cascade,
    offset_start bigint,
    offset_end bigint,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null
);

create table txn_offset_commit (
    id bigint generated always as identity primary key,
    txn_detail bigint references txn_detail (id) on delete cascade,
    consumer_group int references consumer_group (id) on delete cascade,
    generation_id int,
    member_id text,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (txn_detail, consumer_group)
);

create table txn_offset_commit_tp (
    id bigint generated always as identity primary key,
    offset_commit bigint references txn_offset_commit (id) on delete cascade,
    topition int references topition (id) on delete cascade,
    committed_offset bigint,
    leader_epoch int,
    metadata text,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (offset_commit, topition)
);

create table scram_credential (
    id int generated always as identity primary key,
    cluster int not null references cluster (id) on delete cascade,
    username text not null,
    mechanism int not null,
    salt bytea not null,
    iterations int not null,
    stored_key bytea not null,
    server_key bytea not null,
    last_updated timestamptz default current_timestamp not null,
    created_at timestamptz default current_timestamp not null,
    unique (cluster, username, mechanism)
);
