package appliance

// newServices lists every service the box runs, in start order.
func newServices(env *Env) []Service {
	return []Service{
		newLinkService(env), // first: the SMTP server and the runner consult it
		newSMTPService(env),
		newDeliveryService(env),
		newPOP3Service(env),
		newNBTService(env),
		newWebService(env),
	}
}
