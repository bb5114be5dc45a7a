-- mailauthd mysql backend, schema = "postfixadmin": the tables of PostfixAdmin
-- 3.x (MySQL/MariaDB) that the preset reads and writes: mailbox (logins and
-- hashes), alias (the address → goto row PostfixAdmin keeps for every
-- mailbox) and domain.  Column types as PostfixAdmin's upgrade.php creates
-- them; columns the preset never touches are kept so that PostfixAdmin itself
-- can run on these tables.  On an existing PostfixAdmin database, do not run
-- this file: the preset uses the tables PostfixAdmin made.
--
-- Passwords are Dovecot-style strings, as PostfixAdmin writes them with
-- $CONF['encrypt'] = 'dovecot:…': {SHA512-CRYPT}$6$…, {ARGON2ID}$argon2id$…,
-- {BLF-CRYPT}$2y$…; older installs have bare $1$ md5-crypt strings.  Any of
-- them verifies.  A mailbox with active = 0 cannot log in.
CREATE TABLE IF NOT EXISTS domain (
  domain varchar(255) NOT NULL,
  description varchar(255) NOT NULL DEFAULT '',
  aliases int(10) NOT NULL DEFAULT 0,
  mailboxes int(10) NOT NULL DEFAULT 0,
  maxquota bigint(20) NOT NULL DEFAULT 0,
  quota bigint(20) NOT NULL DEFAULT 0,
  transport varchar(255) NOT NULL DEFAULT '',
  backupmx tinyint(1) NOT NULL DEFAULT 0,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active tinyint(1) NOT NULL DEFAULT 1,
  password_expiry int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='Postfix Admin - Virtual Domains';

CREATE TABLE IF NOT EXISTS mailbox (
  username varchar(255) NOT NULL,
  password varchar(255) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL,
  quota bigint(20) NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active tinyint(1) NOT NULL DEFAULT 1,
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  smtp_active tinyint(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (username),
  KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='Postfix Admin - Virtual Mailboxes';

CREATE TABLE IF NOT EXISTS alias (
  address varchar(255) NOT NULL,
  goto text NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active tinyint(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (address),
  KEY domain (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='Postfix Admin - Virtual Aliases';
