package appliance

// newServices lists every service the box runs, in start order.
func newServices(env *Env) []Service {
	return []Service{
		newNetworkService(env),
		newLinkService(env), // before the SMTP server and the runner, which consult it
		newSMTPService(env),
		newDeliveryService(env),
		newPOP3Service(env),
		newNBTService(env),
		newWebService(env),
		newDHCPService(env),
		newTimeService(env),
	}
}
