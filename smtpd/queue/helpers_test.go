package queue

import "os"

func writeTestMessage(q *Queue, env *Envelope) error {
	if err := os.WriteFile(q.MsgPath(env.ID), []byte("Subject: t\r\n\r\nbody\r\n"), 0o600); err != nil {
		return err
	}
	env.Size = 21
	return q.Save(env)
}
