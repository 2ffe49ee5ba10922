package control

// The op names. The arguments of each are listed with it; every op returns
// a JSON result (the type named) or an *Error.
const (
	// Settings. Each edit returns Applied.
	OpSettingsGet = "settings.get" // → config.Config, secrets hidden
	OpConfigKeys  = "config.keys"  // → []ConfigKey
	OpConfigGet   = "config.get"   // {key} → ConfigKey
	OpConfigSet   = "config.set"   // {key, value}
	OpConfigCheck = "config.check" // → ConfigCheck (errors of the file on disk)
	// OpConfigReload re-reads a hand-edited settings file (server only).
	OpConfigReload = "config.reload"
	OpDomainList   = "domain.list"   // → []DomainEntry
	OpDomainAdd    = "domain.add"    // {domain, alias_of}
	OpDomainDel    = "domain.del"    // {domain}
	OpUserList     = "user.list"     // → []UserEntry
	OpUserAdd      = "user.add"      // {name, password}
	OpUserPasswd   = "user.passwd"   // {name, password}
	OpUserDel      = "user.del"      // {name}
	OpAliasList    = "alias.list"    // → []AliasEntry
	OpAliasAdd     = "alias.add"     // {address, targets}; address "@domain" is a catch-all
	OpAliasDel     = "alias.del"     // {address, targets}; no targets: the whole alias
	OpRelayList    = "relay.list"    // → []string
	OpRelayAdd     = "relay.add"     // {cidr}
	OpRelayDel     = "relay.del"     // {cidr}
	OpSmarthostSet = "smarthost.set" // {host, port, user, password, tls}; empty host: deliver by MX
	OpAdminPasswd  = "admin.passwd"  // {password}
	OpAdminCheck   = "admin.check"   // {password, ip}: nil, or CodeUnauthorized
	OpSetupState   = "setup.state"   // → SetupState
	OpSetupInit    = "setup.init"    // {admin_password, hostname, domain, user, password, nbt_name, workgroup}
	OpBackup       = "backup"        // → Backup
	OpRestore      = "restore"       // {backup}: a Backup document as JSON → Applied
	OpQueueList    = "queue.list"    // → []QueuedMessage
	OpQueueShow    = "queue.show"    // {id} → QueuedMessage with Headers
	OpQueueRetry   = "queue.retry"   // {id} → QueueChange
	OpQueueFlush   = "queue.flush"   // {domain} (empty: all) → QueueChange
	OpQueueDel     = "queue.del"     // {id} → QueueChange
	OpNBTNames     = "nbt.names"     // → NBTNames (server only)
	OpStatus       = "status"        // → Status (server only)
	OpLogRecent    = "log.recent"    // {n} → []LogLine (server only)
	OpRestart      = "restart"       // stop and start every service (server only)
	OpEventsWait   = "events.wait"   // {kind, after, timeout} → Event (server only)
)

// The kinds of events.
const (
	// EventSettingsApplied: every service runs with new settings; the
	// generation counts the settings applied since the server started
	// (1: at start).
	EventSettingsApplied = "settings-applied"
	// EventNamesClaimed: the NetBIOS service holds its names on the LAN.
	EventNamesClaimed = "names-claimed"
)
