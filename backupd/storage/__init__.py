"""S3 storage checks and repairs below restic: client factory, Object Lock audit, delete canary,
retention extender and point-in-time recovery from object versions.

These modules talk to S3 through boto3 only; they never read the policy format or credential files
(actions hand them a ready client).
"""
