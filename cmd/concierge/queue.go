package main

import "errors"

func (c *cli) queue(args []string) error {
	return errors.New("the queue commands are not in this build yet")
}
