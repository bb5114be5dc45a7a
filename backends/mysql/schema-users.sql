-- mailauthd mysql backend, schema = "users": the users table of the popular
-- "Postfix + MySQL virtual users" guides (flurdy's and those derived from it,
-- which pam_mysql and saslauthd were set up against).  Logins are the id
-- column (user@domain); crypt holds the hash.  The guides fill it with
--   ENCRYPT('password', CONCAT('$5$', MD5(RAND())))
-- (a $5$ sha256-crypt string); mailauth-user writes any scheme mailauthd
-- verifies.  clear is the guides' plaintext copy: a query such as
--   SELECT CONCAT('{PLAIN}', clear), enabled FROM users WHERE id = '%u'
-- serves CRAM-MD5 and SCRAM from it.  The preset's password change empties
-- clear so an old plaintext password cannot keep working.
--
-- Differences from the guides: crypt is varchar(255) (Argon2 and yescrypt
-- strings are longer than 128), clear has no 'ChangeMe' default, and the
-- table is utf8mb4.  Existing tables from the guides work unchanged.
CREATE TABLE IF NOT EXISTS users (
  id varchar(128) NOT NULL,
  name varchar(128) NOT NULL DEFAULT '',
  uid smallint(5) unsigned NOT NULL DEFAULT 5000,
  gid smallint(5) unsigned NOT NULL DEFAULT 5000,
  home varchar(255) NOT NULL DEFAULT '/var/spool/mail/virtual',
  maildir varchar(255) NOT NULL DEFAULT '',
  enabled tinyint(1) unsigned NOT NULL DEFAULT 1,
  change_password tinyint(1) unsigned NOT NULL DEFAULT 1,
  clear varchar(128) NOT NULL DEFAULT '',
  crypt varchar(255) NOT NULL DEFAULT '',
  quota varchar(255) NOT NULL DEFAULT '',
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
